"""Ranking metrics for the segmentation notebooks: per-class average precision.

Average precision (AP) summarises one class's precision-recall curve over all labelled
pixels, ranked by the model's score for that class. It is computed with scikit-learn's
``average_precision_score`` (one-vs-rest per class), not re-implemented here::

    scores, targets = collect_scores(model, test_loader, device)
    ap = average_precision_per_class(scores, targets, n_class)   # (n_class,), NaN = no positives

The graded metrics (confusion matrix, IoU) are not here: students write those.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from starter.constants import IGNORE_INDEX

__all__ = ["average_precision_per_class", "collect_scores"]


def average_precision_per_class(
    scores: torch.Tensor,
    target: torch.Tensor,
    n_class: int,
    *,
    ignore_index: int = IGNORE_INDEX,
    max_pixels: int | None = 2_000_000,
    seed: int = 0,
) -> torch.Tensor:
    """Average precision of every class, one-vs-rest over the labelled pixels.

    Inputs:
        scores: float (N, n_class, H, W) class scores (probabilities or logits; only their
            order per class matters).
        target: int (N, H, W) classes 0..n_class-1 or ignore_index (other values are skipped too).
        n_class: number of classes.
        ignore_index: label of unlabelled pixels.
        max_pixels: evaluate on a random subset of this many labelled pixels (fixed ``seed``)
            to bound time and memory; None uses every pixel.
    Returns:
        float64 tensor (n_class,): AP of each class; NaN for a class with no labelled pixel
        (AP is undefined without positives).
    """
    if scores.dim() != 4 or scores.shape[1] != n_class:
        raise ValueError(f"scores must be (N, {n_class}, H, W), got {tuple(scores.shape)}")
    if target.shape != scores.shape[:1] + scores.shape[2:]:
        raise ValueError(f"target {tuple(target.shape)} does not match scores {tuple(scores.shape)}")
    flat_scores = scores.detach().permute(0, 2, 3, 1).reshape(-1, n_class)
    flat_target = target.detach().reshape(-1).long()
    valid = (flat_target != ignore_index) & (flat_target >= 0) & (flat_target < n_class)
    flat_scores, flat_target = flat_scores[valid], flat_target[valid]
    if max_pixels is not None and flat_target.numel() > max_pixels:
        keep = torch.randperm(flat_target.numel(), generator=torch.Generator().manual_seed(seed))[:max_pixels]
        flat_scores, flat_target = flat_scores[keep], flat_target[keep]
    labels = flat_target.cpu().numpy()
    score_array = flat_scores.float().cpu().numpy()
    ap = np.full(n_class, np.nan)
    for c in range(n_class):
        positives = labels == c
        if positives.any():
            ap[c] = average_precision_score(positives, score_array[:, c])
    return torch.from_numpy(ap)


@torch.no_grad()
def collect_scores(
    model: torch.nn.Module,
    loader: Iterable,
    device: torch.device | str,
    *,
    stride: int = 2,
    max_batches: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities and targets of a whole loader, for average_precision_per_class.

    Inputs:
        model: returns logits (B, n_class, H, W) (or a dict with "out"); it is not moved, put
            it on ``device`` first. Evaluated in eval mode, previous modes restored.
        loader: yields (images (B, 3, H, W), masks (B, H, W), ...) or dicts with "image"/"mask".
        stride: keep every stride-th row and column (stride 2 = a quarter of the pixels),
            which bounds memory on a whole test set while changing AP very little.
        max_batches: stop after this many batches.
    Returns:
        scores float32 (N, n_class, H', W') on the CPU, targets int64 (N, H', W').
    """
    device = torch.device(device)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    all_scores, all_targets = [], []
    try:
        for step, batch in enumerate(loader):
            if max_batches is not None and step >= max_batches:
                break
            images, masks = (batch["image"], batch["mask"]) if isinstance(batch, dict) else (batch[0], batch[1])
            out = model(images.to(device))
            if isinstance(out, dict):
                out = out["out"]
            probs = out.float().softmax(dim=1)[:, :, ::stride, ::stride]
            all_scores.append(probs.cpu())
            all_targets.append(masks[:, ::stride, ::stride].long().cpu())
    finally:
        for module, mode in modes:
            module.training = mode
    if not all_scores:
        raise ValueError("the loader yielded no batches")
    return torch.cat(all_scores), torch.cat(all_targets)
