"""CMP Facade's object rectangles and the instance annotations derived from them: no torch, no matplotlib.

* ``parse_cmp_objects``: the official XML (``objects/<name>.xml``) as a list of {label, name, box};
* ``write_instance_annotations``: ``instances/<split>.json`` from the targets a given function derives
  (the notebook passes the student's ``instance_targets``, a graded unit: no code here implements that rule).

Data preparation imports this module; torch is imported only inside ``write_instance_annotations``, which
hands the targets function tensors.

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

import hashlib
import inspect
import json
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from starter.common import write_atomic
from starter.constants import CMP_INSTANCE_CLASSES, CMP_OBJECTS_DIR
from starter.instance.rle import rle_encode_crop

if TYPE_CHECKING:
    import torch

INSTANCES_DIR = "instances"  # <dataset>/instances/<split>.json
OBJECTS_DIR = CMP_OBJECTS_DIR  # <dataset>/objects/<name>.xml: the official XML, copied


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
# instances/<split>.json from a targets function (the notebook passes the student's)
# --------------------------------------------------------------------------------------

TargetsFn = Callable[[list, "torch.Tensor", Sequence[int]], Mapping[str, "torch.Tensor"]]


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
    import torch  # only here and in write_instance_annotations: data preparation imports this module

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
    layout (this module's docstring). A split already written by the same function (same source) for the same
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
    import torch  # the targets function takes the label mask as a tensor

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
