"""``CMPFacadeInstances``: (image, target) pairs of CMP Facade as torchvision's detection models expect them,
with ``tv_tensors`` so that ``torchvision.transforms.v2`` keeps boxes and masks aligned."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from starter.common import data_root
from starter.constants import ENV_DATA
from starter.instance.annotations import INSTANCES_DIR, OBJECTS_DIR
from starter.instance.rle import rle_decode


def _nearest_index(n_source: int, n_target: int) -> np.ndarray:
    """Source row (or column) each target pixel samples with nearest-neighbour resizing (pixel centres)."""
    index = np.floor((np.arange(n_target) + 0.5) * n_source / n_target).astype(np.int64)
    return np.minimum(index, n_source - 1)


class CMPFacadeInstances(Dataset):
    """Facade element instances (window, door, balcony, shop) of CMP Facade, for Mask R-CNN.

    Reads ``<root>/<dataset>/`` as written by ``python -m data_scripts.cmp_facade`` (``images/``,
    ``masks/``, ``instances/<split>.json``; see ``starter.instance.annotations`` for the format).

    Inputs:
        root: data root (default ``data_root()``); the dataset folder itself is accepted too.
        split: "train", "val" or "test".
        transforms: ``transforms(image, target) -> (image, target)`` on tv_tensors, e.g.
            ``torchvision.transforms.v2.RandomHorizontalFlip()``: boxes and masks move with the image.
        dataset: folder name under the root ("cmp_facade", or "synthetic_facade" in fast mode).
        longest_side: resize every image so that its longer side has this many pixels (masks with
            nearest neighbour, boxes scaled); None keeps the original size (up to 1024 px).
    Returns (per item):
        image: tv_tensors.Image float32 (3, H, W) in [0, 1] (not normalised: the detection models
            normalise themselves); target: {"boxes": tv_tensors.BoundingBoxes float32 (N, 4) x1, y1,
            x2, y2 in pixels, "labels": int64 (N,) instance labels 1.., "masks": tv_tensors.Mask uint8
            (N, H, W), "image_id": int}. An instance that resizing leaves without a pixel is dropped.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        transforms: Callable | None = None,
        *,
        dataset: str = "cmp_facade",
        longest_side: int | None = None,
    ):
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        self.folder = self._locate(Path(root) if root is not None else data_root(), dataset)
        self.split, self.transforms, self.longest_side = split, transforms, longest_side
        coco = json.loads((self.folder / INSTANCES_DIR / f"{split}.json").read_text(encoding="utf-8"))
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        self.classes = tuple(c["name"] for c in categories)  # instance label k is classes[k - 1]
        self.images = list(coco["images"])
        self.names = [image["name"] for image in self.images]
        by_image: dict[int, list[dict]] = {image["id"]: [] for image in self.images}
        for annotation in coco["annotations"]:
            by_image[annotation["image_id"]].append(annotation)
        self._annotations = [by_image[image["id"]] for image in self.images]

    @staticmethod
    def _locate(root: Path, dataset: str) -> Path:
        for candidate in (root / dataset, root):
            if (candidate / INSTANCES_DIR / "train.json").is_file():
                return candidate
        if (root / dataset / "meta.json").is_file():
            raise FileNotFoundError(
                f"{root / dataset} has no instance annotations yet: derive them from its object rectangles "
                "with your instance_targets first,\n"
                f"    write_instance_annotations({str(root / dataset)!r}, instance_targets, INSTANCE_CLASS_IDS)"
            )
        raise FileNotFoundError(
            f"{dataset} is not prepared under {root}. Prepare it (again: finished images are skipped) with\n"
            f"    python -m data_scripts.cmp_facade --root {root}\n"
            f"(or set {ENV_DATA} to the folder that holds {dataset}/)."
        )

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"CMPFacadeInstances({str(self.folder)!r}, split={self.split!r}, {len(self)} images)"

    def output_size(self, index: int) -> tuple[int, int]:
        """Returns: (H, W) of item ``index`` after resizing (before ``transforms``)."""
        height, width = self.images[index]["height"], self.images[index]["width"]
        if self.longest_side is None:
            return height, width
        scale = self.longest_side / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def _rows_cols(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        (height, width), (out_h, out_w) = (
            (self.images[index]["height"], self.images[index]["width"]),
            self.output_size(index),
        )
        return _nearest_index(height, out_h), _nearest_index(width, out_w)

    def load_image(self, index: int) -> torch.Tensor:
        """Returns: float32 (3, H, W) in [0, 1], resized (bilinear) to ``output_size(index)``."""
        with Image.open(self.folder / self.images[index]["file_name"]) as image_file:
            image = image_file.convert("RGB")
        out_h, out_w = self.output_size(index)
        if image.size != (out_w, out_h):
            image = image.resize((out_w, out_h), Image.BILINEAR)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div_(255.0)

    def label_mask(self, index: int) -> torch.Tensor:
        """Returns: the semantic mask, int64 (H, W) of CMP class indices (255 = unlabelled), resized like the image."""
        with Image.open(self.folder / "masks" / f"{self.names[index]}.png") as mask_file:
            mask = np.asarray(mask_file)
        rows, cols = self._rows_cols(index)
        return torch.from_numpy(mask[np.ix_(rows, cols)].astype(np.int64))

    def instance_masks(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns: (masks uint8 (N, H, W), labels int64 (N,), boxes float32 (N, 4) x1, y1, x2, y2), resized."""
        rows, cols = self._rows_cols(index)
        out_h, out_w = len(rows), len(cols)
        height, width = self.images[index]["height"], self.images[index]["width"]
        masks, labels, boxes = [], [], []
        for annotation in self._annotations[index]:
            x, y, w, h = annotation["bbox"]
            full = rle_decode(annotation["segmentation"], box=(x, y, w, h))
            resized = full[np.ix_(rows, cols)]
            if not resized.any():
                continue  # a sliver that nearest-neighbour resizing misses
            masks.append(resized)
            labels.append(annotation["category_id"])
            boxes.append([x * out_w / width, y * out_h / height, (x + w) * out_w / width, (y + h) * out_h / height])
        if not masks:
            return torch.zeros(0, out_h, out_w, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4)
        return (
            torch.from_numpy(np.stack(masks)),
            torch.tensor(labels, dtype=torch.int64),
            torch.tensor(boxes, dtype=torch.float32),
        )

    def objects_path(self, index: int) -> Path:
        """Returns: the official XML of item ``index`` (copied by the data script)."""
        return self.folder / OBJECTS_DIR / f"{self.names[index]}.xml"

    def __getitem__(self, index: int):
        from torchvision import tv_tensors

        image = self.load_image(index)
        masks, labels, boxes = self.instance_masks(index)
        canvas = tuple(image.shape[-2:])
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=canvas),
            "labels": labels,
            "masks": tv_tensors.Mask(masks),
            "image_id": int(self.images[index]["id"]),
        }
        image = tv_tensors.Image(image)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target
