"""Instance segmentation of facade elements: annotations, dataset, Mask R-CNN loop, evaluation, figures.

The CMP Facade base set ships, next to every image and label PNG, an XML file of object rectangles.
``python -m data_scripts.cmp_facade`` copies them to ``objects/``; the notebook turns them into
instance annotations with the student's own ``instance_targets`` (a graded unit: no code here or in
the data scripts implements that rule) and ``write_instance_annotations`` stores the result; this
package reads them back for the notebook. One module per role:

* ``annotations``: ``parse_cmp_objects`` (the official XML) and ``write_instance_annotations``
  (``instances/<split>.json``; its docstring gives the format). No torch, no matplotlib;
* ``rle``: ``rle_encode`` / ``rle_decode``, COCO's compressed run-length encoding of a binary mask;
* ``dataset``: ``CMPFacadeInstances``, (image, target) pairs as torchvision's detection models expect them;
* ``detection``: ``collate_detection``, ``build_mask_rcnn``, ``train_detection_one_epoch``,
  ``train_detection`` (epochs, resumable), ``predict_instances`` (a detection model returns a loss dict in train mode, so ``starter.train.fit``
  does not apply);
* ``evaluation``: ``evaluate_instances`` (AP with the matching and AP functions it is given: never its
  own) and ``coco_mask_map`` (the same numbers from torchmetrics/pycocotools, for the cross-check);
* ``semantic``: ``SmallSegNet``, a compact semantic segmentation network for the classical part;
* ``plots``: ``show_instances``, ``show_matches``, ``plot_pr_curves``, ``plot_counts``.

Every name is importable from here (``from starter.instance import CMPFacadeInstances``). The modules
that import torch or matplotlib load on the first use of one of their names, so that data preparation,
which reads the annotations, pays for neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from starter.instance.annotations import (
    INSTANCES_DIR,
    OBJECTS_DIR,
    TargetsFn,
    function_fingerprint,
    instance_labels,
    parse_cmp_objects,
    write_instance_annotations,
)
from starter.instance.rle import rle_decode, rle_encode, rle_encode_crop

if TYPE_CHECKING:  # what editors and type checkers see; at run time __getattr__ loads them
    from starter.instance.dataset import CMPFacadeInstances
    from starter.instance.detection import (
        build_mask_rcnn,
        collate_detection,
        predict_instances,
        train_detection,
        train_detection_one_epoch,
    )
    from starter.instance.evaluation import COCO_IOU_THRESHOLDS, coco_mask_map, evaluate_instances
    from starter.instance.plots import (
        MATCH_COLOURS,
        instance_colours,
        plot_counts,
        plot_pr_curves,
        show_instances,
        show_matches,
    )
    from starter.instance.semantic import SmallSegNet, normalize_image, predict_semantic

# {name: the module that defines it} for the modules that import torch or matplotlib.
_LAZY = {
    "CMPFacadeInstances": "dataset",
    "build_mask_rcnn": "detection",
    "collate_detection": "detection",
    "predict_instances": "detection",
    "train_detection": "detection",
    "train_detection_one_epoch": "detection",
    "COCO_IOU_THRESHOLDS": "evaluation",
    "coco_mask_map": "evaluation",
    "evaluate_instances": "evaluation",
    "MATCH_COLOURS": "plots",
    "instance_colours": "plots",
    "plot_counts": "plots",
    "plot_pr_curves": "plots",
    "show_instances": "plots",
    "show_matches": "plots",
    "SmallSegNet": "semantic",
    "normalize_image": "semantic",
    "predict_semantic": "semantic",
}

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "INSTANCES_DIR",
    "MATCH_COLOURS",
    "OBJECTS_DIR",
    "CMPFacadeInstances",
    "SmallSegNet",
    "TargetsFn",
    "build_mask_rcnn",
    "coco_mask_map",
    "collate_detection",
    "evaluate_instances",
    "function_fingerprint",
    "instance_colours",
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
    "train_detection",
    "train_detection_one_epoch",
    "write_instance_annotations",
]


def __getattr__(name: str) -> Any:
    """Load the module that defines `name` on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later lookups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
