"""Mask AP: ``evaluate_instances`` with the matching and AP functions it is given (never its own), and
``coco_mask_map``, the same numbers from torchmetrics/pycocotools for the cross-check."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

COCO_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50, 0.55, ..., 0.95


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
