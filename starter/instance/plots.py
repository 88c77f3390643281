"""Figures of the instance notebook: ``show_instances``, ``show_matches``, ``plot_pr_curves``, ``plot_counts``."""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

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
