"""Segmentation datasets used by the course notebooks.

Every dataset returns ``(image, mask)`` after its joint ``transforms`` (default: ``ToTensor``
then ``Normalize``), i.e. by default

* image: float32 (3, H, W), normalised with ImageNet mean/std,
* mask:  int64 (H, W) holding class indices ``0..n_class-1`` or ``IGNORE_INDEX`` (255).

Transforms receive PIL images (image RGB, mask mode "L"), so the presets of
``starter.transforms`` apply unchanged. Datasets only hold paths and numbers, so they pickle
cleanly into DataLoader worker processes.

* ``SyntheticSegmentation``: generated on the fly, no download (CI, quick try-outs); the NumPy
  generator itself is ``starter.synthetic.SyntheticScenes`` (no torch).
* ``CMPFacade``: the CMP Facade database as prepared by ``python -m data_scripts.cmp_facade``.
* ``FolderSegmentation``: any ``images/`` + ``masks/`` folder (index masks, or colour-coded masks
  decoded by a function the notebook passes in: the kit has no colour decoder, writing one is a graded
  exercise of the FCN notebook, ``rgb_to_index``).
* ``dataset_spec`` / ``chosen_dataset``: which prepared dataset a notebook runs on
  (``$SEGKIT_DATASET`` swaps it, e.g. the UNet notebook on ``cmp_facade``) with its own class
  names and palette.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from starter.common import data_root
from starter.constants import (
    CITYSCAPES_TRAIN_CLASSES,
    CITYSCAPES_TRAIN_PALETTE,
    CMP_CLASSES,
    CMP_N_CLASS,
    CMP_PALETTE,
    ENV_DATA,
    ENV_DATASET,
    IGNORE_INDEX,
    LANDCOVER_CLASSES,
    LANDCOVER_PALETTE,
    SBD_CLASSES,
    SBD_PALETTE,
)
from starter.synthetic import SyntheticScenes, class_colour
from starter.transforms import Compose, Normalize, ToTensor

__all__ = [
    "data_root",
    "default_transforms",
    "SyntheticSegmentation",
    "FolderSegmentation",
    "CMPFacade",
    "IMAGE_EXTENSIONS",
    "DatasetSpec",
    "dataset_spec",
    "chosen_dataset",
]

# Image file types FolderSegmentation looks for, in order of preference.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def default_transforms() -> Compose:
    """``ToTensor`` then ``Normalize`` (ImageNet mean/std): what a dataset uses when given none."""
    return Compose([ToTensor(), Normalize()])


# --- synthetic data --------------------------------------------------------------------


class SyntheticSegmentation(SyntheticScenes, Dataset):
    """Random shapes on a background (``starter.synthetic.SyntheticScenes``) as a torch Dataset.

    Sample ``i`` is generated from ``numpy.random.default_rng([seed, i])``, so it is the same
    on every call, in every process, whatever the access order. Class appearance (colour +
    stripe texture) depends only on the class index, never on the seed, so a train set
    (seed 0) and a validation set (seed 1) describe the same classes.

    Inputs:
        n_samples: dataset length.
        n_class: number of classes including background class 0 (2..255).
        size: (H, W) of every sample.
        seed: selects the samples.
        transforms: joint transform on (PIL RGB image, PIL "L" mask); None -> ToTensor + Normalize.
        ignore_border: width in pixels of a frame labelled IGNORE_INDEX (0 = none).
        classes: optional class names (default "class0", "class1", ...).
    Returns (per item):
        image float32 (3, H, W), mask int64 (H, W) with defaults; ``generate(i)`` gives the raw
        uint8 image (H, W, 3) and mask (H, W) before transforms.
    """

    def __init__(
        self,
        n_samples: int,
        n_class: int,
        size: Sequence[int] = (128, 160),
        *,
        seed: int = 0,
        transforms: Callable | None = None,
        ignore_border: int = 0,
        classes: Sequence[str] | None = None,
    ):
        super().__init__(n_samples, n_class, size, seed=seed, ignore_border=ignore_border, classes=classes)
        self.transforms = transforms

    def __getitem__(self, index: int):
        image, mask = self.generate(index)
        transforms = self.transforms if self.transforms is not None else default_transforms()
        return transforms(Image.fromarray(image), Image.fromarray(mask))


# --- folder datasets -------------------------------------------------------------------


def _read_split(folder: Path, split: str) -> list[str]:
    split_file = folder / "splits" / f"{split}.txt"
    if not split_file.is_file():
        available = sorted(p.stem for p in (folder / "splits").glob("*.txt"))
        raise FileNotFoundError(f"split file {split_file} not found; available splits: {available or 'none'}")
    return [line.strip() for line in split_file.read_text().splitlines() if line.strip()]


def _index_images(images_dir: Path) -> dict[str, Path]:
    """Map file stem -> image path (first extension in IMAGE_EXTENSIONS wins)."""
    by_stem: dict[str, Path] = {}
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    for path in images_dir.iterdir():
        ext = path.suffix.lower()
        if ext not in rank or path.name.startswith("."):
            continue
        current = by_stem.get(path.stem)
        if current is None or rank[ext] < rank[current.suffix.lower()]:
            by_stem[path.stem] = path
    return by_stem


class FolderSegmentation(Dataset):
    """A generic ``images/`` + ``masks/`` folder.

    Layout: ``root/images/<name>.{jpg,png,...}``, ``root/masks/<name>.png``, optional
    ``root/splits/<split>.txt`` (one name per line) and ``root/meta.json`` (``n_class``,
    ``classes``). Masks are index PNGs (mode "L"/"P") or RGB colour-coded PNGs, which
    ``decode_colours(rgb, palette)`` turns into class ids (unknown colours: IGNORE_INDEX). When
    ``n_class`` is known, index values ``>= n_class`` (other than 255) also become IGNORE_INDEX.

    Inputs:
        root: dataset folder.
        split: name of a split file, or None for every image that has a mask.
        palette: RGB triple per class for colour-coded masks.
        transforms: joint transform on (PIL RGB image, PIL "L" mask); None -> ToTensor + Normalize.
        n_class: number of classes (default: len(palette), else meta.json, else unknown/None).
        decode_colours: for colour-coded masks, a function (uint8 (H, W, 3), palette) -> integer
            (H, W) class ids with 255 for colours not in the palette: the FCN notebook's
            ``rgb_to_index``. The kit ships none (it is the answer to a graded exercise).
    Returns (per item):
        image float32 (3, H, W), mask int64 (H, W) with defaults.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        palette: Sequence[Sequence[int]] | None = None,
        transforms: Callable | None = None,
        n_class: int | None = None,
        decode_colours: Callable | None = None,
    ):
        self.root = Path(root)
        images_dir, masks_dir = self.root / "images", self.root / "masks"
        if not images_dir.is_dir() or not masks_dir.is_dir():
            raise FileNotFoundError(
                f"{self.root} must contain images/ and masks/ folders; check the path "
                "or prepare the dataset with the matching script in data_scripts/"
            )
        self.split = split
        self.palette = tuple(tuple(int(v) for v in colour) for colour in palette) if palette else None
        self.transforms = transforms
        self.decode_colours = decode_colours
        meta = self._read_meta()
        if n_class is None:
            n_class = len(self.palette) if self.palette else meta.get("n_class")
        self.n_class = n_class
        if meta.get("classes") and (n_class is None or len(meta["classes"]) == n_class):
            self.classes = tuple(meta["classes"])
        else:
            self.classes = tuple(f"class{i}" for i in range(n_class)) if n_class else ()

        image_by_stem = _index_images(images_dir)
        if split is None:
            names = sorted(stem for stem in image_by_stem if (masks_dir / f"{stem}.png").is_file())
        else:
            names = _read_split(self.root, split)
        self._check_pairs_exist(names, image_by_stem, masks_dir)
        self.names = names
        # Plain strings: cheap to pickle into DataLoader workers.
        self._image_paths = [str(image_by_stem[name]) for name in names]
        self._mask_paths = [str(masks_dir / f"{name}.png") for name in names]

    def _read_meta(self) -> dict:
        meta_file = self.root / "meta.json"
        return json.loads(meta_file.read_text()) if meta_file.is_file() else {}

    def _check_pairs_exist(self, names: list[str], image_by_stem: dict[str, Path], masks_dir: Path) -> None:
        missing = [name for name in names if name not in image_by_stem or not (masks_dir / f"{name}.png").is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(names)} samples in {self.root} lack an image or a "
                f"masks/<name>.png, e.g. {missing[:3]}; re-run the preparation script"
            )

    def __len__(self) -> int:
        return len(self.names)

    def load_mask(self, index: int) -> np.ndarray:
        """Mask ``index`` as class indices before transforms.

        Returns:
            uint8 (H, W) with values 0..n_class-1 or IGNORE_INDEX.
        """
        with Image.open(self._mask_paths[index]) as mask_file:
            if mask_file.mode in ("RGB", "RGBA"):
                indices = self._decode_colours(np.asarray(mask_file.convert("RGB")), self._mask_paths[index])
            else:
                indices = np.asarray(mask_file)
        if indices.ndim != 2:
            raise ValueError(f"{self._mask_paths[index]}: expected a single-channel index mask")
        if indices.max(initial=0) > IGNORE_INDEX:
            raise ValueError(f"{self._mask_paths[index]}: class values above {IGNORE_INDEX}")
        indices = indices.astype(np.uint8)
        if self.n_class is not None:
            indices = np.where(indices >= self.n_class, IGNORE_INDEX, indices).astype(np.uint8)
        return indices

    def _decode_colours(self, rgb: np.ndarray, path: str) -> np.ndarray:
        """Inputs: uint8 (H, W, 3) colour-coded mask. Returns: (H, W) class ids from ``decode_colours``, checked."""
        if self.palette is None:
            raise ValueError(f"{path} is a colour-coded (RGB) mask; pass palette=[(r, g, b) of class 0, ...]")
        if self.decode_colours is None:
            raise ValueError(
                f"{path} is a colour-coded (RGB) mask; pass decode_colours=rgb_to_index (your function from "
                "the FCN notebook) to turn its colours into class ids"
            )
        indices = np.asarray(self.decode_colours(rgb, self.palette))
        if indices.shape != rgb.shape[:2] or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(
                f"decode_colours must return integer class ids of shape {rgb.shape[:2]}, got "
                f"{indices.dtype} {indices.shape}"
            )
        if indices.size and (indices.min() < 0 or indices.max() > IGNORE_INDEX):
            raise ValueError(f"decode_colours returned values outside 0..{IGNORE_INDEX}")
        return indices

    def load_image(self, index: int) -> Image.Image:
        """Image ``index`` as an RGB PIL image before transforms."""
        with Image.open(self._image_paths[index]) as image_file:
            return image_file.convert("RGB")

    def __getitem__(self, index: int):
        image = self.load_image(index)
        mask = Image.fromarray(self.load_mask(index))
        transforms = self.transforms if self.transforms is not None else default_transforms()
        return transforms(image, mask)


class CMPFacade(FolderSegmentation):
    """CMP Facade database (Tyleček & Šára, GCPR 2013), 12 classes (``CMP_CLASSES``).

    Reads ``<root>/cmp_facade`` as written by ``python -m data_scripts.cmp_facade --root ROOT``:
    ``images/<name>.jpg``, ``masks/<name>.png`` (0..11, 255 = ignore), ``splits/{train,val,test}.txt``.

    Inputs:
        root: data root (default ``data_root()``, i.e. $SEGKIT_DATA or ~/segkit-data); the
            ``cmp_facade`` folder itself is accepted too.
        split: "train", "val" or "test".
        transforms: joint transform; None -> ToTensor + Normalize (see ``starter.transforms``
            ``train_preset``/``eval_preset`` for the assignment's).
    Returns (per item):
        image float32 (3, H, W), mask int64 (H, W) with defaults.
    """

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train", transforms: Callable | None = None):
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        data_dir = self._locate(Path(root) if root is not None else data_root())
        super().__init__(data_dir, split, transforms=transforms, n_class=CMP_N_CLASS)
        self.classes = CMP_CLASSES

    @staticmethod
    def _locate(root: Path) -> Path:
        for candidate in (root / "cmp_facade", root):
            if (candidate / "splits" / "train.txt").is_file() and (candidate / "masks").is_dir():
                return candidate
        raise FileNotFoundError(
            f"CMP Facade is not prepared under {root / 'cmp_facade'}. Prepare it with\n"
            f"    python -m data_scripts.cmp_facade --root {root}\n"
            f"(or set {ENV_DATA} to the folder that holds cmp_facade/)."
        )


# --------------------------------------------------------------------------------------
# which dataset a notebook runs on
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """A prepared dataset as the notebooks need it.

    Attributes:
        name: folder name under the data root (``cmp_facade``, ``stanford_background``, ...).
        folder: the prepared folder (images/, masks/, splits/, meta.json).
        classes: class names, index i = class i.
        palette: RGB triple per class, for plots (and for decoding colour-coded masks).
        colour_masks: the masks are RGB colour-coded (meta.json ``"mask_encoding": "rgb"``), not index PNGs.
    """

    name: str
    folder: Path
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    colour_masks: bool = False

    @property
    def n_class(self) -> int:
        return len(self.classes)

    def dataset(
        self, split: str, transforms: Callable | None = None, decode_colours: Callable | None = None
    ) -> FolderSegmentation:
        """Inputs: split name ("train", "val", "test"), joint transforms, and for colour-coded masks the
        function that decodes them (e.g. ``rgb_to_index``). Returns: FolderSegmentation."""
        palette = self.palette if self.colour_masks else None
        return FolderSegmentation(
            self.folder,
            split,
            palette=palette,
            transforms=transforms,
            n_class=self.n_class,
            decode_colours=decode_colours,
        )


# The kit's own datasets keep their published class names and colours; any other prepared folder
# brings its names in meta.json ("classes", optional "palette").
_KNOWN_LOOKS = {
    "cmp_facade": (CMP_CLASSES, CMP_PALETTE),
    "stanford_background": (SBD_CLASSES, SBD_PALETTE),
    "landcover": (LANDCOVER_CLASSES, LANDCOVER_PALETTE),
    "kitti": (CITYSCAPES_TRAIN_CLASSES, CITYSCAPES_TRAIN_PALETTE),
}


def chosen_dataset(default: str) -> str:
    """Inputs: the notebook's own dataset name. Returns: ``$SEGKIT_DATASET`` when set, else ``default``."""
    return os.environ.get(ENV_DATASET, "").strip() or default


def dataset_spec(name: str, root: str | os.PathLike | None = None) -> DatasetSpec:
    """Describe the prepared dataset ``<root>/<name>``.

    Inputs:
        name: folder name of a prepared dataset (see ``data_scripts``).
        root: data root (default ``data_root()``).
    Returns:
        DatasetSpec with the dataset's own class names and palette.
    Raises:
        FileNotFoundError: the dataset is not prepared there (the message says how to prepare it).
    """
    folder = Path(root if root is not None else data_root()) / name
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        raise FileNotFoundError(
            f"dataset {name!r} is not prepared under {folder} (no meta.json). Prepare it with "
            f"`python -m data_scripts.{name} --root {folder.parent}` if the kit has a script for it, "
            f"or set ${ENV_DATA} / ${ENV_DATASET}."
        )
    meta = json.loads(meta_file.read_text())
    classes, palette = _KNOWN_LOOKS.get(name, (None, None))
    if classes is None:
        if not meta.get("classes"):
            raise ValueError(f"{meta_file} lists no 'classes': add the class names, index i = class i")
        classes = tuple(str(c) for c in meta["classes"])
        palette = tuple(tuple(int(v) for v in c) for c in meta["palette"]) if meta.get("palette") else None
        if palette is None:
            palette = tuple(tuple(int(255 * v) for v in class_colour(i)) for i in range(len(classes)))
    colour_masks = meta.get("mask_encoding") == "rgb"
    return DatasetSpec(
        name=name, folder=folder, classes=tuple(classes), palette=tuple(palette), colour_masks=colour_masks
    )
