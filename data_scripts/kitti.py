"""Prepare the KITTI semantic segmentation benchmark (200 labelled street scenes) for the FCN notebook.

The original FCN-ResNet-18 assignment trained on it: ``SEGKIT_DATASET=kitti`` runs the FCN notebook's
ResNet-18 FCNs (32s and 16s) on it.

KITTI's downloads need a (free) registration: ask for ``data_semantics.zip`` on
http://www.cvlibs.net/datasets/kitti/eval_semseg.php?benchmark=semantics2015 (the link comes by e-mail),
put it into ``DIR/downloads/kitti`` (or any folder given with ``--archives``) and run::

    python -m data_scripts.kitti --root DIR [--archives FOLDER]
    python -m data_scripts.kitti --root DIR --from-unpacked FOLDER   # the folder holding training/

The archive holds ``training/image_2/<name>.png`` (200 RGB images, about 375x1242), ``training/semantic/<name>.png``
(their labels as Cityscapes label ids 0..33), ``training/semantic_rgb``, ``training/instance`` and
``testing/image_2`` (200 images without labels). Only the labelled training images are used.

Checksums: KITTI publishes none. The first run computes the archive's SHA-256, prints it and keeps it
next to the archive (``data_semantics.zip.sha256``, trust on first use, see ``data_scripts.download``); later
runs verify against it, and ``meta.json`` records it so that two copies can be compared.

Result, ``DIR/kitti/``::

    images/<name>.png     the official images, copied
    masks/<name>.png      single channel: Cityscapes train ids 0..18 (CITYSCAPES_TRAIN_CLASSES), 255 = void
    splits/{train,val,test}.txt
    meta.json             classes, palette, id mapping, split rule, licence, checksum

Label mapping (``CITYSCAPES_ID_TO_TRAIN_ID``, as in cityscapesScripts' ``labels.py``): the 19 evaluated
classes get train ids 0..18; every other id (unlabeled, ego vehicle, out of roi, static, dynamic, ground,
parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer, licence plate) becomes 255.

Split rule (``KITTI_SPLIT_SIZES``): names sorted; the first 160 train, the next 20 validation, the last 20
test (000000_10..000159_10 / 000160_10..000179_10 / 000180_10..000199_10). The benchmark's own test
labels are not public, so the test split is carved from the training images. Re-running is safe: finished
pairs are skipped and every file is written under a temporary name and renamed into place.

Licence: Creative Commons Attribution-NonCommercial-ShareAlike 3.0 (KITTI's terms): non-commercial use,
cite the papers below, share adaptations alike; students download their own copy after registering.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from data_scripts.download import DatasetEntry, DownloadError, RemoteFile, extract, register
from data_scripts.prepare import verify_manual_archive, write_splits_and_meta
from starter.common import write_atomically
from starter.constants import (
    CITYSCAPES_ID_TO_TRAIN_ID,
    CITYSCAPES_N_CLASS,
    CITYSCAPES_TRAIN_CLASSES,
    CITYSCAPES_TRAIN_PALETTE,
    IGNORE_INDEX,
    KITTI_SPLIT_SIZES,
)

DATASET = "kitti"
ARCHIVE = "data_semantics.zip"
HOMEPAGE = "http://www.cvlibs.net/datasets/kitti/eval_semseg.php?benchmark=semantics2015"
CITATION = (
    "H. Alhaija, S. Mustikovela, L. Mescheder, A. Geiger, C. Rother, Augmented Reality Meets Computer Vision: "
    "Efficient Data Generation for Urban Driving Scenes, IJCV 2018; A. Geiger, P. Lenz, R. Urtasun, Are we ready "
    "for Autonomous Driving? The KITTI Vision Benchmark Suite, CVPR 2012"
)
LICENCE = f"CC BY-NC-SA 3.0 (non-commercial; registration required; do not redistribute). Cite: {CITATION}"

# Manual download (registration), hence url=None; the SHA-256 is trusted on first use.
ENTRY = register(
    DatasetEntry(
        name=DATASET,
        files=(RemoteFile(ARCHIVE, None),),  # type: ignore[arg-type]
        licence=LICENCE,
        citation=CITATION,
        homepage=HOMEPAGE,
    )
)


# --- labels ------------------------------------------------------------------------------


def _train_id_table() -> np.ndarray:
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[: len(CITYSCAPES_ID_TO_TRAIN_ID)] = CITYSCAPES_ID_TO_TRAIN_ID
    return table


TRAIN_ID_TABLE = _train_id_table()  # uint8 (256,): Cityscapes id (PNG value) -> train id or 255


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map Cityscapes label ids to train ids.

    Inputs:
        label_ids: integer (H, W), the values of a ``training/semantic/*.png`` (0..33).
    Returns:
        uint8 (H, W): 0..18 for the 19 evaluated classes, 255 (void) for every other id, including values
        outside 0..255.
    """
    ids = np.asarray(label_ids)
    if ids.ndim != 2:
        raise ValueError(f"expected a single-channel (H, W) label image, got shape {ids.shape}")
    inside = (ids >= 0) & (ids < TRAIN_ID_TABLE.size)
    return np.where(inside, TRAIN_ID_TABLE[np.clip(ids, 0, TRAIN_ID_TABLE.size - 1)], IGNORE_INDEX).astype(np.uint8)


def split_names(names: Sequence[str], sizes: tuple[int, int] = KITTI_SPLIT_SIZES) -> dict[str, list[str]]:
    """The split rule: names sorted; first ``sizes[0]`` train, next ``sizes[1]`` val, the rest test.

    With fewer images than the rule needs (a partial copy), the same proportions (80 % / 10 %) apply.

    Returns:
        {"train": [...], "val": [...], "test": [...]}; for the 200 official images 160 / 20 / 20.
    """
    ordered = sorted(names)
    if len(set(ordered)) != len(ordered):
        raise ValueError("duplicate sample names; each name must appear once")
    n_train, n_val = sizes
    if len(ordered) < n_train + n_val + 1:
        n_train, n_val = round(0.8 * len(ordered)), round(0.1 * len(ordered))
    return {
        "train": ordered[:n_train],
        "val": ordered[n_train : n_train + n_val],
        "test": ordered[n_train + n_val :],
    }


# --- finding and converting pairs --------------------------------------------------------


def find_pairs(unpacked_dir: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """Image/label pairs of ``training/`` under ``unpacked_dir`` (the folder holding ``training/``, or above it).

    Returns:
        {name: (image_2 path, semantic path)}, names sorted.
    """
    folder = Path(unpacked_dir)
    candidates = [folder / "training", *sorted(folder.glob("*/training"))]
    training = next((c for c in candidates if (c / "image_2").is_dir() and (c / "semantic").is_dir()), None)
    if training is None:
        raise FileNotFoundError(f"{folder} holds no training/image_2 and training/semantic folders")
    pairs = {}
    for image_path in sorted((training / "image_2").glob("*.png")):
        label_path = training / "semantic" / image_path.name
        if label_path.is_file() and not image_path.name.startswith("."):
            pairs[image_path.stem] = (image_path, label_path)
    return pairs


def prepare_pair(name: str, image_src: Path, label_src: Path, out_dir: Path) -> bool:
    """Copy the image to ``images/<name>.png`` and write its train ids to ``masks/<name>.png``.

    Returns:
        False when both already exist (nothing done), else True.
    Raises:
        ValueError: the label is not single-channel or differs in size from the image.
    """
    image_dst, mask_dst = out_dir / "images" / f"{name}.png", out_dir / "masks" / f"{name}.png"
    if image_dst.is_file() and mask_dst.is_file():
        return False
    with Image.open(label_src) as label_file:
        train_ids = to_train_ids(np.asarray(label_file))
    with Image.open(image_src) as image_file:
        width, height = image_file.size
    if train_ids.shape != (height, width):
        raise ValueError(
            f"{name}: image is {height}x{width} but its label is {train_ids.shape[0]}x{train_ids.shape[1]}"
        )
    write_atomically(image_dst, lambda temporary: shutil.copyfile(image_src, temporary))
    write_atomically(mask_dst, lambda temporary: Image.fromarray(train_ids, mode="L").save(temporary, format="PNG"))
    return True


# --- the whole preparation ---------------------------------------------------------------


def _missing_archive_message(archives_dir: Path) -> str:
    return (
        f"{ARCHIVE} is not in {archives_dir}. KITTI needs a free registration and cannot be downloaded "
        f"automatically: ask for {ARCHIVE} at {HOMEPAGE}, put it into {archives_dir} (or pass its folder with "
        "--archives) and run this again. Already unpacked: --from-unpacked FOLDER."
    )


def prepare_kitti(
    root: str | os.PathLike,
    archives_dir: str | os.PathLike | None = None,
    *,
    unpacked_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Prepare ``<root>/kitti`` (see the module docstring for the layout).

    Inputs:
        root: data root (the folder ``$SEGKIT_DATA`` points at).
        archives_dir: folder holding the downloaded ``data_semantics.zip`` (default ``<root>/downloads/kitti``).
        unpacked_dir: folder with ``training/`` already unpacked; skips the archive.
        progress: show a progress bar.
    Returns:
        Path of ``<root>/kitti``.
    """
    root = Path(root)
    source: dict[str, str] = {}
    if unpacked_dir is None:
        archives = Path(archives_dir) if archives_dir is not None else root / "downloads" / DATASET
        if not (archives / ARCHIVE).is_file():
            raise FileNotFoundError(_missing_archive_message(archives))
        source = {"archive": ARCHIVE, "sha256": verify_manual_archive(archives / ARCHIVE)}
        unpacked_dir = extract(archives / ARCHIVE, root / "downloads" / f"{DATASET}_unpacked")
    pairs = find_pairs(unpacked_dir)
    if not pairs:
        raise FileNotFoundError(f"no training/image_2/*.png with a training/semantic/*.png under {unpacked_dir}")
    out_dir = root / DATASET
    for sub in ("images", "masks", "splits"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for name in tqdm(list(pairs), desc="kitti pairs", disable=not progress, leave=False):
        prepare_pair(name, *pairs[name], out_dir)

    splits = split_names(list(pairs))
    write_splits_and_meta(
        out_dir,
        splits,
        {
            "dataset": DATASET,
            "classes": list(CITYSCAPES_TRAIN_CLASSES),
            "palette": [list(colour) for colour in CITYSCAPES_TRAIN_PALETTE],
            "n_class": CITYSCAPES_N_CLASS,
            "ignore_index": IGNORE_INDEX,
            "mask_values": "Cityscapes train ids 0..18; 255 = void (every other Cityscapes label id)",
            "cityscapes_id_to_train_id": list(CITYSCAPES_ID_TO_TRAIN_ID),
            "split_rule": "names sorted; first 160 train, next 20 val, last 20 test (of the 200 labelled images)",
            "source": source or {"unpacked": str(unpacked_dir)},
            "licence": ENTRY.licence,
            "citation": ENTRY.citation,
            "homepage": ENTRY.homepage,
        },
    )
    return out_dir


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=None, help="data root (default: $SEGKIT_DATA or ~/segkit-data)")
    parser.add_argument(
        "--archives", type=Path, default=None, help=f"folder holding {ARCHIVE} (default ROOT/downloads/kitti)"
    )
    parser.add_argument("--from-unpacked", type=Path, default=None, metavar="DIR", help="the folder holding training/")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    root = args.root
    if root is None:
        from starter.common import data_root

        root = data_root()
    try:
        out_dir = prepare_kitti(root, args.archives, unpacked_dir=args.from_unpacked, progress=not args.no_progress)
    except (FileNotFoundError, DownloadError, ValueError) as error:  # a message, not a traceback
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    counts = json.loads((out_dir / "meta.json").read_text())["counts"]
    print(f"KITTI semantics ready in {out_dir}: {counts}")
    return out_dir


if __name__ == "__main__":
    main()
