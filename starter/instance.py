"""Instance segmentation of facade elements: annotations, dataset, Mask R-CNN loop, evaluation plumbing, figures.

The CMP Facade base set ships, next to every image and label PNG, an XML file of object rectangles.
``python -m data_scripts.cmp_facade`` copies them to ``objects/``; the notebook turns them into
instance annotations with the student's own ``instance_targets`` (a graded unit: no code here or in
the data scripts implements that rule) and ``write_instance_annotations`` stores the result (see
"Annotation format" below); this module reads them back for the notebook:

* ``parse_cmp_objects``: the official XML as a list of {label, name, box} (fractions of the image size);
* ``write_instance_annotations``: ``instances/<split>.json`` from the targets a given function derives;
* ``rle_encode`` / ``rle_decode``: COCO's compressed run-length encoding of a binary mask;
* ``CMPFacadeInstances``: (image, target) pairs as torchvision's detection models expect them, with
  ``tv_tensors`` so that ``torchvision.transforms.v2`` keeps boxes and masks aligned;
* ``collate_detection``, ``build_mask_rcnn``, ``train_detection_one_epoch``, ``predict_instances``:
  the detection training loop (a detection model returns a loss dict in train mode, so
  ``starter.train.fit`` does not apply);
* ``evaluate_instances`` (AP with the matching and AP functions it is given: never its own) and
  ``coco_mask_map`` (the same numbers from torchmetrics/pycocotools, for the cross-check);
* figures: ``show_instances``, ``show_matches``, ``plot_pr_curves``, ``plot_counts``;
* ``SmallSegNet``: a compact semantic segmentation network for the window maps of the classical part.

Annotation format (``<dataset>/instances/<split>.json``, COCO's "instances" layout, so pycocotools'
``COCO(path)`` and ``COCOeval(..., "segm")`` read it as it is)::

    {"info": {...}, "licenses": [],
     "categories": [{"id": 1, "name": "window", "supercategory": "facade", "cmp_class": 2}, ...],
     "images": [{"id": 1, "file_name": "images/cmp_b0001.jpg", "name": "cmp_b0001",
                 "height": H, "width": W}, ...],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": pixels,
                      "bbox": [x, y, w, h],               # the targets' box, pixels, COCO's xywh
                      "segmentation": {"size": [H, W], "counts": "..."}}, ...]}  # compressed RLE

Category id k is instance label k: 1 + the class's position in ``CMP_INSTANCE_CLASSES`` (0 is
background for torchvision's detection models); ``cmp_class`` is its index in the kit's masks.
"""

from __future__ import annotations

import colorsys
import hashlib
import inspect
import json
import math
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from starter.common import data_root, write_atomic
from starter.constants import CMP_INSTANCE_CLASSES, ENV_DATA, IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "INSTANCES_DIR",
    "OBJECTS_DIR",
    "CMPFacadeInstances",
    "SmallSegNet",
    "build_mask_rcnn",
    "coco_mask_map",
    "collate_detection",
    "evaluate_instances",
    "instance_labels",
    "normalize_image",
    "parse_cmp_objects",
    "plot_counts",
    "plot_pr_curves",
    "predict_instances",
    "predict_semantic",
    "rle_decode",
    "rle_encode",
    "rle_encode_crop",
    "show_instances",
    "show_matches",
    "train_detection_one_epoch",
    "write_instance_annotations",
]

INSTANCES_DIR = "instances"  # <dataset>/instances/<split>.json
OBJECTS_DIR = "objects"  # <dataset>/objects/<name>.xml: the official XML, copied
COCO_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50, 0.55, ..., 0.95


def instance_labels(classes: Sequence[str] = CMP_INSTANCE_CLASSES) -> dict[str, int]:
    """Inputs: instance class names. Returns: {name: instance label}, labels 1, 2, ... (0 = background)."""
    return {name: index + 1 for index, name in enumerate(classes)}


# --------------------------------------------------------------------------------------
# the official XML
# --------------------------------------------------------------------------------------

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def parse_cmp_objects(source: str | bytes | os.PathLike) -> list[dict[str, Any]]:
    """Read a CMP Facade object file (``cmp_bNNNN.xml``).

    The official files have no root element and separate lines by a bare CR; every value is on
    its own line. Labels are the official ids 1..12; here they become the kit's class indices
    (official id - 1, the values of the kit's masks). The two ``<x>`` values of a rectangle are its
    top and bottom (fractions of the image HEIGHT) and the two ``<y>`` values its left and right
    (fractions of the width), whatever the tag names suggest; the box returned is (x1, y1, x2, y2)
    with x horizontal, as everywhere else in the kit.

    Inputs:
        source: path of the XML file, or its text (str or bytes, recognised by a leading "<").
    Returns:
        [{"label": int class index (0..11), "name": str, "box": (x1, y1, x2, y2)}, ...] in file
        order; the box in fractions of the image width/height, with x1 <= x2 and y1 <= y2.
    Raises:
        ValueError: an object without points or label (the message names the source).
    """
    if isinstance(source, bytes):
        text, where = source.decode("utf-8", errors="replace"), "<bytes>"
    elif isinstance(source, str) and source.lstrip().startswith("<"):
        text, where = source, "<text>"
    else:
        path = Path(source)
        text, where = path.read_bytes().decode("utf-8", errors="replace"), str(path)
    text = _XML_DECLARATION.sub("", text)
    try:
        root = ElementTree.fromstring(f"<objects>{text}</objects>")
    except ElementTree.ParseError as error:
        raise ValueError(f"{where}: not a CMP object file ({error})") from None
    objects = []
    for number, element in enumerate(root.iter("object"), start=1):
        points, label = element.find("points"), element.find("label")
        if points is None or label is None or label.text is None:
            raise ValueError(f"{where}: object {number} has no <points> or <label>")
        # Despite their names, the official <x> values are rows (fractions of the height) and the <y>
        # values columns (fractions of the width): only that reading puts the rectangles on their
        # objects in the label masks (a window's rectangle is 89 % window pixels at the median over
        # the base set that way, 2 % the other way).
        rows = [float(v.text.strip()) for v in points.findall("x") if v.text and v.text.strip()]
        cols = [float(v.text.strip()) for v in points.findall("y") if v.text and v.text.strip()]
        if not rows or not cols:
            raise ValueError(f"{where}: object {number} has no x or y coordinates")
        name = element.findtext("labelname", default="").strip()
        box = (min(cols), min(rows), max(cols), max(rows))
        objects.append({"label": int(label.text.strip()) - 1, "name": name, "box": box})
    return objects


# --------------------------------------------------------------------------------------
# COCO run-length encoding (column-major runs, first run = zeros), compressed as COCO's string
# --------------------------------------------------------------------------------------


def _counts_to_string(counts: Sequence[int]) -> str:
    """COCO's rleToString: each count (minus the count two places back, from the fourth on) as
    little-endian 5-bit groups with a continuation bit, offset by 48 into printable ASCII."""
    characters = []
    for index, count in enumerate(counts):
        value = int(count) - (int(counts[index - 2]) if index > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = value != -1 if group & 0x10 else value != 0
            characters.append(chr((group | (0x20 if more else 0)) + 48))
    return "".join(characters)


def _string_to_counts(text: str) -> list[int]:
    """COCO's rleFrString (the inverse of _counts_to_string)."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def rle_encode_crop(crop: Any, top: int, left: int, height: int, width: int) -> dict[str, Any]:
    """COCO compressed RLE of a (height, width) mask that is 0 outside ``crop`` placed at (top, left).

    Cheaper than ``rle_encode`` on the full mask for small objects in large images.

    Inputs:
        crop: (h, w) bool/0-1 array; top, left: its position; height, width: the full mask's size.
    Returns:
        {"size": [height, width], "counts": str}, as pycocotools.mask.encode writes it.
    """
    crop = np.asarray(crop, dtype=bool)
    crop_height, crop_width = crop.shape
    if top < 0 or left < 0 or top + crop_height > height or left + crop_width > width:
        raise ValueError(f"a {crop.shape} crop at ({top}, {left}) does not fit a {height}x{width} mask")
    strip = np.zeros((height, crop_width), dtype=bool)  # the columns the crop spans, full height
    strip[top : top + crop_height] = crop
    flat = strip.ravel(order="F")  # COCO runs go down the columns
    if flat.size == 0:
        counts = [height * width]
    else:
        changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        counts = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
        if flat[0]:
            counts.insert(0, 0)  # the first run counts zeros
        counts[0] += left * height  # the columns left of the strip
        after = (width - left - crop_width) * height
        if len(counts) % 2:  # ends with zeros: the columns right of the strip extend that run
            counts[-1] += after
        elif after:
            counts.append(after)
    return {"size": [int(height), int(width)], "counts": _counts_to_string(counts)}


def rle_encode(mask: Any) -> dict[str, Any]:
    """Inputs: (H, W) bool/0-1 array or tensor. Returns: COCO compressed RLE {"size": [H, W], "counts": str}."""
    mask = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode takes one (H, W) mask, got shape {mask.shape}")
    return rle_encode_crop(mask, 0, 0, *mask.shape)


def _rle_counts(rle: Mapping[str, Any]) -> list[int]:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return _string_to_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]


def _decode_columns(counts: Sequence[int], height: int, first: int, stop: int) -> np.ndarray:
    """Columns first..stop-1 of an RLE mask as a (height, stop - first) bool array."""
    ends = np.cumsum(np.asarray(counts, dtype=np.int64))
    starts = ends - np.asarray(counts, dtype=np.int64)
    low, high = first * height, stop * height
    ones_start = np.clip(starts[1::2], low, high) - low
    ones_end = np.clip(ends[1::2], low, high) - low
    change = np.zeros(high - low + 1, dtype=np.int64)
    np.add.at(change, ones_start, 1)
    np.add.at(change, ones_end, -1)
    return np.cumsum(change[:-1]).astype(bool).reshape(stop - first, height).T


def rle_decode(rle: Mapping[str, Any], box: Sequence[float] | None = None) -> np.ndarray:
    """Decode COCO RLE (compressed string or uncompressed list of counts).

    Inputs:
        rle: {"size": [H, W], "counts": str | list[int]}.
        box: optional COCO bbox [x, y, w, h] known to hold every pixel of the mask: only its
            columns are decoded (much faster for small objects in large images).
    Returns:
        (H, W) uint8 array of 0/1.
    """
    height, width = (int(v) for v in rle["size"])
    counts = _rle_counts(rle)
    if sum(counts) != height * width:
        raise ValueError(f"RLE counts add up to {sum(counts)}, not {height}x{width}")
    first, stop = 0, width
    if box is not None:
        first, stop = max(0, int(math.floor(box[0]))), min(width, int(math.ceil(box[0] + box[2])))
    mask = np.zeros((height, width), dtype=np.uint8)
    if stop > first:
        mask[:, first:stop] = _decode_columns(counts, height, first, stop)
    return mask


# --------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------


def _nearest_index(n_source: int, n_target: int) -> np.ndarray:
    """Source row (or column) each target pixel samples with nearest-neighbour resizing (pixel centres)."""
    index = np.floor((np.arange(n_target) + 0.5) * n_source / n_target).astype(np.int64)
    return np.minimum(index, n_source - 1)


class CMPFacadeInstances(Dataset):
    """Facade element instances (window, door, balcony, shop) of CMP Facade, for Mask R-CNN.

    Reads ``<root>/<dataset>/`` as written by ``python -m data_scripts.cmp_facade`` (``images/``,
    ``masks/``, ``instances/<split>.json``; see the module docstring for the format).

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


# --------------------------------------------------------------------------------------
# instances/<split>.json from a targets function (the notebook passes the student's)
# --------------------------------------------------------------------------------------

TargetsFn = Callable[[list, torch.Tensor, Sequence[int]], Mapping[str, torch.Tensor]]


def _code_text(code: Any) -> str:
    """The bytecode, names and constants of a code object, nested code objects included (their repr
    holds a memory address, which differs between two definitions of the same function)."""
    consts = [_code_text(c) if inspect.iscode(c) else repr(c) for c in code.co_consts]
    return repr((code.co_code, code.co_names, code.co_varnames, consts))


def function_fingerprint(function: Callable) -> str:
    """A short hash of a function's source (of its bytecode and constants where the source is unknown):
    annotations derived by another version of the function are derived again."""
    try:
        text = inspect.getsource(function)
    except (OSError, TypeError):
        code = getattr(function, "__code__", None)
        text = _code_text(code) if code is not None else repr(function)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _split_names(folder: Path, split: str) -> list[str]:
    path = folder / "splits" / f"{split}.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _checked_targets(targets: Any, name: str, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masks bool (N, H, W), labels int (N,), boxes float (N, 4)) of what a targets function returned, or a
    ValueError that says what is wrong with it."""
    where = f"instance_targets on {name}"
    if not isinstance(targets, Mapping) or not {"boxes", "labels", "masks"} <= set(targets):
        raise ValueError(f"{where} returned {type(targets).__name__}, not a dict with boxes, labels and masks")
    masks, labels, boxes = (torch.as_tensor(targets[key]).detach().cpu() for key in ("masks", "labels", "boxes"))
    n = len(labels)
    if masks.shape != (n, height, width) or boxes.shape != (n, 4) or labels.dim() != 1:
        raise ValueError(
            f"{where}: masks {tuple(masks.shape)}, labels {tuple(labels.shape)}, boxes {tuple(boxes.shape)}; "
            f"expected ({n}, {height}, {width}), ({n},), ({n}, 4)"
        )
    return masks.numpy().astype(bool), labels.numpy().astype(np.int64), boxes.numpy().astype(np.float64)


def _annotations_of(masks: np.ndarray, labels: np.ndarray, boxes: np.ndarray) -> list[dict[str, Any]]:
    """COCO annotations (without ids) of one image's targets; the RLE is encoded from the columns a mask spans."""
    height, width = masks.shape[1:]
    annotations = []
    for mask, label, (x1, y1, x2, y2) in zip(masks, labels, boxes):
        columns = np.flatnonzero(mask.any(axis=0))
        first, stop = (int(columns[0]), int(columns[-1]) + 1) if columns.size else (0, 0)
        annotations.append(
            {
                "category_id": int(label),
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                "area": int(mask.sum()),
                "segmentation": rle_encode_crop(mask[:, first:stop], 0, first, height, width),
                "iscrowd": 0,
            }
        )
    return annotations


def write_instance_annotations(
    folder: str | os.PathLike,
    targets_fn: TargetsFn,
    classes: Sequence[int],
    *,
    splits: Sequence[str] = ("train", "val", "test"),
    progress: bool = True,
) -> dict[str, int]:
    """Write ``instances/<split>.json`` of a prepared CMP folder with the targets ``targets_fn`` derives.

    For every image of a split: ``targets_fn(parse_cmp_objects(objects/<name>.xml), label mask, classes)``
    (the label mask int64 (H, W) at the image's own size; no XML file: no objects), stored in COCO's
    layout (module docstring). A split already written by the same function (same source) for the same
    images and classes is kept; anything else is written again.

    Inputs:
        folder: the prepared dataset (``<data root>/cmp_facade``); targets_fn: the notebook's
            ``instance_targets``; classes: the class indices with instances (label k = classes[k - 1]).
    Returns:
        {split: number of instances}.
    Raises:
        ValueError: targets_fn returned something that is not a dict of boxes, labels and masks of
        matching shapes (the message names the image).
    """
    folder = Path(folder)
    classes = list(map(int, classes))
    derived_by = function_fingerprint(targets_fn)
    names_by_split = {split: _split_names(folder, split) for split in splits}
    image_ids = {name: number for number, name in enumerate(sorted(n for v in names_by_split.values() for n in v), 1)}
    class_names = json.loads((folder / "meta.json").read_text(encoding="utf-8")).get("classes", [])
    categories = [
        {
            "id": k + 1,
            "name": class_names[c] if c < len(class_names) else str(c),
            "supercategory": "facade",
            "cmp_class": c,
        }
        for k, c in enumerate(classes)
    ]
    counts = {}
    for split, names in names_by_split.items():
        path = folder / INSTANCES_DIR / f"{split}.json"
        info = {"derived_by": derived_by, "classes": classes, "names": names}
        existing = _read_json(path)
        if existing is not None and existing.get("info", {}).get("source") == info:
            counts[split] = len(existing["annotations"])
            continue
        images, annotations = [], []
        for name in tqdm(names, desc=f"instances {split}", disable=not progress, leave=False):
            with Image.open(folder / "masks" / f"{name}.png") as mask_file:
                label_mask = torch.from_numpy(np.asarray(mask_file).astype(np.int64))
            height, width = tuple(label_mask.shape)
            images.append(
                {
                    "id": image_ids[name],
                    "file_name": f"images/{name}.jpg",
                    "name": name,
                    "height": height,
                    "width": width,
                }
            )
            xml = folder / OBJECTS_DIR / f"{name}.xml"
            objects = parse_cmp_objects(xml) if xml.is_file() else []
            checked = _checked_targets(targets_fn(objects, label_mask, classes), name, height, width)
            for annotation in _annotations_of(*checked):
                annotations.append({"id": len(annotations) + 1, "image_id": image_ids[name], **annotation})
        coco = {
            "info": {"description": f"instances ({split}) derived by instance_targets", "source": info},
            "licenses": [],
            "categories": categories,
            "images": images,
            "annotations": annotations,
        }
        write_atomic(path, json.dumps(coco, separators=(",", ":")) + "\n")
        counts[split] = len(annotations)
    return counts


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------
# Mask R-CNN: model, training loop, prediction
# --------------------------------------------------------------------------------------


def collate_detection(batch: Sequence[tuple[Any, Any]]) -> tuple[tuple, tuple]:
    """DataLoader collate for detection: images differ in size, so keep lists. Returns: (images, targets)."""
    return tuple(zip(*batch))


def build_mask_rcnn(
    n_labels: int,
    *,
    coco_weights: bool = False,
    min_size: int = 800,
    max_size: int = 1333,
    detections_per_image: int = 300,
    **options: Any,
) -> nn.Module:
    """torchvision's Mask R-CNN v2 (ResNet-50 FPN) for ``n_labels`` labels, background included.

    Inputs:
        n_labels: 1 + number of instance classes.
        coco_weights: start from the COCO-trained weights (both heads' last layers replaced for
            our classes); needs the weights file (``starter.backbones.ensure_weights`` downloads it
            or says where to put it). False: every weight random (``weights=None``).
        min_size, max_size: the model's own resizing of every input (GeneralizedRCNNTransform).
        detections_per_image: at most this many instances per image (a facade can have 300 windows;
            torchvision's default is 100).
        options: further MaskRCNN arguments, e.g. rpn_post_nms_top_n_test, box_batch_size_per_image
            (fewer proposals and sampled regions: much cheaper heads, for tiny CPU runs).
    Returns:
        the model (train mode).
    Raises:
        starter.backbones.PretrainedWeightsUnavailable: coco_weights without the file.
    """
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights, maskrcnn_resnet50_fpn_v2
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    options = {"min_size": min_size, "max_size": max_size, "box_detections_per_img": detections_per_image, **options}
    if not coco_weights:
        return maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=n_labels, **options)
    from starter.backbones import ensure_weights

    weights = MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1
    ensure_weights(weights)
    model = maskrcnn_resnet50_fpn_v2(weights=weights, **options)
    box_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(box_features, n_labels)
    mask_features = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(mask_features, 256, n_labels)
    return model


def _target_to(target: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in target.items()}


def train_detection_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    *,
    lr_scheduler: Any = None,
    max_steps: int | None = None,
    grad_clip: float | None = 10.0,
    progress: bool = True,
) -> dict[str, float]:
    """One pass over ``loader`` (or ``max_steps`` batches) of a torchvision detection model.

    In train mode ``model(images, targets)`` returns a dict of losses (classifier, box regression,
    mask, objectness, RPN boxes); their sum is the training loss.

    Inputs:
        model: a detection model on ``device``; loader: yields (images, targets) tuples
            (``collate_detection``); optimizer: steps the model's parameters; lr_scheduler: a torch
            LR scheduler stepped after every batch (warm-up, cosine), or None; max_steps: stop after
            this many batches; grad_clip: clip the gradient norm (random-init Mask R-CNN can blow up
            early), None: no clipping.
    Returns:
        {"loss": mean total, "loss_classifier": mean, ...} over the batches seen.
    """
    device = torch.device(device)
    model.train()
    sums: dict[str, float] = {}
    n_batches = 0
    total = min(len(loader), max_steps) if max_steps is not None and hasattr(loader, "__len__") else None
    bar = tqdm(loader, total=total, desc="train", disable=not progress, leave=False)
    for step, (images, targets) in enumerate(bar):
        if max_steps is not None and step >= max_steps:
            break
        images = [image.to(device) for image in images]
        targets = [_target_to(target, device) for target in targets]
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"detection loss is {loss.item()} at step {step} ({ {k: round(v.item(), 3) for k, v in losses.items()} }):"
                " lower the learning rate or keep gradient clipping on"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if lr_scheduler is not None:
            lr_scheduler.step()
        for key, value in {"loss": loss, **losses}.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        n_batches += 1
        bar.set_postfix(loss=f"{sums['loss'] / n_batches:.3f}")
    bar.close()
    if n_batches == 0:
        raise ValueError("the training loader yielded no batches (empty dataset, or max_steps=0?)")
    return {key: value / n_batches for key, value in sums.items()}


@torch.no_grad()
def predict_instances(
    model: nn.Module,
    loader,
    device: torch.device | str,
    *,
    mask_threshold: float = 0.5,
    max_batches: int | None = None,
    progress: bool = True,
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """Run a detection model in eval mode over ``loader``; everything comes back on the CPU.

    Inputs:
        model, loader (``collate_detection``), device; mask_threshold: Mask R-CNN's soft masks
        (probabilities) become binary masks at this value.
    Returns:
        (predictions, targets), one dict per image: prediction {"masks": bool (K, H, W), "scores":
        float (K,), "labels": int64 (K,), "boxes": float (K, 4)}, sorted by descending score;
        target {"masks": bool (N, H, W), "labels": int64 (N,), "boxes": float (N, 4)}.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    predictions, targets_out = [], []
    try:
        for step, (images, targets) in enumerate(tqdm(loader, desc="predict", disable=not progress, leave=False)):
            if max_batches is not None and step >= max_batches:
                break
            outputs = model([image.to(device) for image in images])
            for output, target in zip(outputs, targets):
                masks = output["masks"]
                masks = masks[:, 0] if masks.dim() == 4 else masks
                predictions.append(
                    {
                        "masks": (masks >= mask_threshold).cpu(),
                        "scores": output["scores"].float().cpu(),
                        "labels": output["labels"].cpu(),
                        "boxes": output["boxes"].float().cpu(),
                    }
                )
                targets_out.append(
                    {
                        "masks": target["masks"].bool().cpu().as_subclass(torch.Tensor),
                        "labels": target["labels"].cpu().as_subclass(torch.Tensor),
                        "boxes": target["boxes"].float().cpu().as_subclass(torch.Tensor),
                    }
                )
    finally:
        model.train(was_training)
    return predictions, targets_out


# --------------------------------------------------------------------------------------
# evaluation: AP with the functions it is given, and the same with pycocotools (torchmetrics)
# --------------------------------------------------------------------------------------


def evaluate_instances(
    predictions: Sequence[Mapping[str, torch.Tensor]],
    targets: Sequence[Mapping[str, torch.Tensor]],
    *,
    match_fn: Callable,
    ap_fn: Callable,
    classes: Sequence[str],
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
) -> dict[str, Any]:
    """Mask AP per class and IoU threshold, with YOUR matching and AP functions.

    For every class and threshold: in each image the predictions and ground-truth instances of that
    class are matched with ``match_fn(pred_masks, scores, gt_masks, iou_threshold)``; a prediction
    matched to a ground truth is a true positive. The flags and scores of all images are pooled and
    ``ap_fn(tp, scores, n_gt)`` gives the class's AP (the usual "AP over the dataset").

    Inputs:
        predictions, targets: per image, as returned by ``predict_instances`` (or built by hand:
            "masks" (K, H, W), "scores" (K,), "labels" (K,) instance labels 1..len(classes)).
        match_fn, ap_fn: your ``match_instances`` and ``average_precision``.
        classes: instance class names, label k = classes[k - 1].
        iou_thresholds: default 0.50, 0.55, ..., 0.95 (COCO).
    Returns:
        {"ap": float tensor (T, C), NaN for a class without ground truth; "iou_thresholds": list;
         "n_gt": per class; "ap50": {class: AP at 0.5}; "map": {class: mean over thresholds};
         "mean_ap50", "mean_map": over the classes that have ground truth;
         "flags": {class: (tp bool tensor, scores) at 0.5}, for precision-recall curves}.
    """
    n_class = len(classes)
    ap = torch.full((len(iou_thresholds), n_class), float("nan"))
    n_gt = [0] * n_class
    flags: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for c in range(n_class):
        label = c + 1
        per_image = []
        for prediction, target in zip(predictions, targets):
            keep = prediction["labels"] == label
            per_image.append(
                (
                    prediction["masks"][keep].bool(),
                    prediction["scores"][keep].float(),
                    target["masks"][target["labels"] == label].bool(),
                )
            )
        n_gt[c] = sum(int(gt.shape[0]) for _, _, gt in per_image)
        if n_gt[c] == 0:
            continue
        for t, threshold in enumerate(iou_thresholds):
            tp_parts, score_parts = [], []
            for pred_masks, scores, gt_masks in per_image:
                if pred_masks.shape[0] == 0:
                    continue
                matched = torch.as_tensor(match_fn(pred_masks, scores, gt_masks, threshold))
                tp_parts.append(matched.reshape(-1) >= 0)
                score_parts.append(scores)
            tp = torch.cat(tp_parts) if tp_parts else torch.zeros(0, dtype=torch.bool)
            scores = torch.cat(score_parts) if score_parts else torch.zeros(0)
            ap[t, c] = float(ap_fn(tp, scores, n_gt[c]))
            if t == 0:
                flags[classes[c]] = (tp, scores)
    has_gt = torch.tensor([n > 0 for n in n_gt])
    per_class_map = ap.mean(0)
    return {
        "ap": ap,
        "iou_thresholds": list(iou_thresholds),
        "n_gt": dict(zip(classes, n_gt)),
        "ap50": dict(zip(classes, ap[0].tolist())),
        "map": dict(zip(classes, per_class_map.tolist())),
        "mean_ap50": float(ap[0][has_gt].mean()) if has_gt.any() else float("nan"),
        "mean_map": float(per_class_map[has_gt].mean()) if has_gt.any() else float("nan"),
        "flags": flags,
    }


def coco_mask_map(
    predictions: Sequence[Mapping[str, torch.Tensor]],
    targets: Sequence[Mapping[str, torch.Tensor]],
    *,
    classes: Sequence[str],
    max_detections: int = 1000,
) -> dict[str, Any]:
    """Mask AP the way COCO computes it: torchmetrics' MeanAveragePrecision(iou_type="segm") on pycocotools.

    COCO interpolates precision at 101 recall points (not at every recall step) and keeps at most
    ``max_detections`` instances per image (its default 100 is too few for facades). pycocotools'
    own summary ignores a maximum other than 100, so the APs are read from its precision table.

    Inputs:
        predictions, targets: as for ``evaluate_instances``; classes: instance class names.
    Returns:
        {"ap50": {class: AP}, "map": {class: AP@[.5:.95]}, "mean_ap50", "mean_map",
         "curves": {class: (recall (101,), precision (101,))} at IoU 0.5 (NaN where COCO has none)}.
    """
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(
        iou_type="segm",
        iou_thresholds=list(COCO_IOU_THRESHOLDS),
        max_detection_thresholds=[1, 10, max_detections],
        class_metrics=True,
        extended_summary=True,
    )
    for prediction, target in zip(predictions, targets):
        metric.update(
            [
                {
                    "masks": prediction["masks"].bool(),
                    "scores": prediction["scores"].float(),
                    "labels": prediction["labels"],
                }
            ],
            [{"masks": target["masks"].bool(), "labels": target["labels"]}],
        )
    with_truth = {int(label) for target in targets for label in target["labels"].tolist()}
    if not any(len(prediction["scores"]) for prediction in predictions):  # pycocotools has no table then
        ap = {name: 0.0 if c + 1 in with_truth else float("nan") for c, name in enumerate(classes)}
        values = [v for v in ap.values() if not math.isnan(v)]
        mean = float(np.mean(values)) if values else float("nan")
        return {"ap50": ap, "map": dict(ap), "mean_ap50": mean, "mean_map": mean, "curves": {}}
    result = metric.compute()
    precision = result["precision"][..., 0, -1]  # (T, 101 recall points, K classes): area "all", most detections
    present = [int(c) for c in torch.as_tensor(result["classes"]).reshape(-1).tolist()]
    recall_points = torch.linspace(0, 1, precision.shape[1])
    ap50, coco_map, curves = {}, {}, {}
    for c, name in enumerate(classes):
        label = c + 1
        if label not in present:
            ap50[name] = coco_map[name] = float("nan")
            continue
        table = precision[:, :, present.index(label)].double()
        valid = table > -1
        per_threshold = torch.where(valid, table, torch.zeros_like(table)).sum(1) / valid.sum(1).clamp(min=1)
        per_threshold[~valid.any(1)] = float("nan")  # no ground truth of this class
        ap50[name], coco_map[name] = float(per_threshold[0]), float(torch.nanmean(per_threshold))
        curves[name] = (recall_points, torch.where(valid[0], table[0], torch.full_like(table[0], float("nan"))))
    values50 = [v for v in ap50.values() if not math.isnan(v)]
    values = [v for v in coco_map.values() if not math.isnan(v)]
    return {
        "ap50": ap50,
        "map": coco_map,
        "mean_ap50": float(np.mean(values50)) if values50 else float("nan"),
        "mean_map": float(np.mean(values)) if values else float("nan"),
        "curves": curves,
    }


# --------------------------------------------------------------------------------------
# a compact semantic segmentation network (the window maps of the classical part)
# --------------------------------------------------------------------------------------


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallSegNet(nn.Module):
    """A small encoder-decoder with skip connections (a U-Net with few channels), trainable on a CPU.

    Inputs:
        n_class: output classes; width: channels of the first stage (doubled per stage, 4 stages).
    Forward:
        (B, 3, H, W) -> logits (B, n_class, H, W); H and W multiples of 8.
    """

    def __init__(self, n_class: int, width: int = 16):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.ModuleList()
        cin = 3
        for w in widths:
            self.stages.append(nn.Sequential(_conv_bn_relu(cin, w), _conv_bn_relu(w, w)))
            cin = w
        self.merges = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(widths[i + 1] + widths[i], widths[i]), _conv_bn_relu(widths[i], widths[i]))
            for i in range(len(widths) - 1)
        )
        self.head = nn.Conv2d(widths[0], n_class, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for index, stage in enumerate(self.stages):
            x = stage(x if index == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for merge in reversed(self.merges):
            skip = skips.pop()
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = merge(torch.cat([x, skip], dim=1))
        return self.head(x)


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) or (B, 3, H, W) in [0, 1] -> ImageNet-normalised (what SmallSegNet is trained on)."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return (image - mean) / std


@torch.no_grad()
def predict_semantic(model: nn.Module, image: torch.Tensor, device: torch.device | str, *, multiple: int = 8):
    """Class probabilities of one image in [0, 1] (3, H, W), padded to a multiple of ``multiple`` on
    the bottom/right and cropped back. Returns: float (n_class, H, W) on the CPU."""
    was_training = model.training
    model.eval()
    try:
        size = tuple(image.shape[-2:])
        pad_h, pad_w = (-size[0]) % multiple, (-size[1]) % multiple
        x = nn.functional.pad(normalize_image(image)[None], (0, pad_w, 0, pad_h))
        logits = model(x.to(device))[0, :, : size[0], : size[1]]
    finally:
        model.train(was_training)
    return logits.float().softmax(0).cpu()


# --------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------

MATCH_COLOURS = {"matched": (0.1, 0.75, 0.2), "false": (0.9, 0.1, 0.1), "missed": (0.15, 0.35, 1.0)}


def _image_hwc(image: Any) -> np.ndarray:
    array = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    if array.dtype == np.uint8:
        array = array / 255.0
    return np.clip(array.astype(np.float64), 0.0, 1.0)


def _masks_array(masks: Any) -> np.ndarray:
    array = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    return array.astype(bool).reshape(-1, *array.shape[-2:]) if array.size else np.zeros((0, *array.shape[-2:]), bool)


def instance_colours(n: int, seed: int = 0) -> np.ndarray:
    """n well-separated RGB colours in [0, 1] (golden-ratio hues, shuffled so neighbours differ)."""
    hues = (np.arange(n) * 0.6180339887 + 0.07 * seed) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.9, 1.0) for h in hues]).reshape(n, 3)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _paint(canvas: np.ndarray, masks: np.ndarray, colours: np.ndarray, alpha: float, outline: bool = True) -> None:
    for mask, colour in zip(masks, colours):
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * colour
        if outline:
            canvas[_outline(mask)] = colour


def show_instances(
    image: Any,
    panels: Mapping[str, Any] | Any,
    *,
    alpha: float = 0.55,
    title: str | None = None,
) -> Figure:
    """Instances coloured one by one, side by side for several methods.

    Inputs:
        image: (3, H, W) float in [0, 1] (or (H, W, 3) uint8).
        panels: {panel title: masks (K, H, W) bool/0-1}, e.g. {"ground truth": ..., "watershed": ...};
            a single mask stack is shown as one panel.
        alpha: opacity of the colours.
    Returns:
        Figure with one panel per entry, each titled with its instance count.
    """
    if not isinstance(panels, Mapping):
        panels = {"instances": panels}
    base = _image_hwc(image)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, (name, masks) in zip(axes[0], panels.items()):
        masks = _masks_array(masks)
        canvas = base.copy()
        _paint(canvas, masks, instance_colours(len(masks)), alpha)
        ax.imshow(canvas)
        ax.set_title(f"{name}: {len(masks)}", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def show_matches(
    images: Sequence[Any],
    pred_masks: Sequence[Any],
    gt_masks: Sequence[Any],
    matches: Sequence[Any],
    *,
    titles: Sequence[str] | None = None,
    alpha: float = 0.5,
) -> Figure:
    """Matched, false and missed instances on a few facades.

    Inputs (one entry per facade):
        images: (3, H, W) in [0, 1]; pred_masks: (K, H, W); gt_masks: (N, H, W);
        matches: (K,) the ground-truth index each prediction was matched to, or -1 (your
            ``match_instances``).
        titles: one per facade.
    Returns:
        Figure: matched predictions green, false positives red, missed ground truth blue.
    """
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.9), squeeze=False)
    for index, ax in enumerate(axes[0]):
        preds, gts = _masks_array(pred_masks[index]), _masks_array(gt_masks[index])
        matched = torch.as_tensor(matches[index]).reshape(-1).numpy()
        hit = matched >= 0
        missed = np.ones(len(gts), dtype=bool)
        missed[matched[hit]] = False
        canvas = _image_hwc(images[index]).copy()
        for kind, masks in (("missed", gts[missed]), ("matched", preds[hit]), ("false", preds[~hit])):
            _paint(canvas, masks, np.tile(MATCH_COLOURS[kind], (len(masks), 1)), alpha)
        ax.imshow(canvas)
        label = titles[index] if titles else f"facade {index + 1}"
        ax.set_title(
            f"{label}\n{int(hit.sum())} matched, {int((~hit).sum())} false, {int(missed.sum())} missed", fontsize=8
        )
        ax.axis("off")
    handles = [Patch(facecolor=colour, label=kind) for kind, colour in MATCH_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    plt.close(fig)
    return fig


def plot_pr_curves(curves: Mapping[str, tuple[Any, Any]], *, title: str = "precision-recall at IoU 0.5") -> Figure:
    """Inputs: {curve name: (recall, precision)} (NaN points are skipped). Returns: Figure."""
    fig, ax = plt.subplots(figsize=(4.8, 3.8))
    for name, (recall, precision) in curves.items():
        recall = np.asarray(torch.as_tensor(recall, dtype=torch.float64))
        precision = np.asarray(torch.as_tensor(precision, dtype=torch.float64))
        keep = np.isfinite(precision) & np.isfinite(recall)
        ax.plot(recall[keep], precision[keep], label=name, drawstyle="steps-post")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_counts(true_counts: Sequence[int], predicted: Mapping[str, Sequence[int]], *, what: str = "windows") -> Figure:
    """Predicted against true number of instances per facade, one colour per method. Returns: Figure."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    true_counts = np.asarray(true_counts)
    top = max([1, int(true_counts.max(initial=0))] + [int(np.max(v, initial=0)) for v in predicted.values()])
    ax.plot([0, top], [0, top], color="grey", lw=1, ls="--", label="exact")
    for name, counts in predicted.items():
        counts = np.asarray(counts)
        error = np.abs(counts - true_counts).mean() if len(counts) else float("nan")
        ax.scatter(true_counts, counts, s=14, alpha=0.75, label=f"{name} (mean abs. error {error:.1f})")
    ax.set(xlabel=f"true {what} per facade", ylabel=f"predicted {what}", title=f"counting {what}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    plt.close(fig)
    return fig
