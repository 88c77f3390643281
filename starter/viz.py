"""Plots for the segmentation notebooks: colour masks, prediction grids, curves, IoU bars.

Every plotting function returns a matplotlib Figure and never calls plt.show(). The
figures are detached from pyplot (plt.close), so in Jupyter a call as the last line of a
cell displays once; after `fig = show_predictions(...)` write `fig` (or display(fig)) to see it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from starter.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD

# Ignored pixels are drawn grey, so they stay distinct from palettes whose class 0 is black.
IGNORE_COLOR = (128, 128, 128)

Palette = Sequence[Sequence[int]]


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _detached(fig: Figure) -> Figure:
    # Detach from pyplot: no double display in Jupyter and no "too many open figures" warning.
    plt.close(fig)
    return fig


def colorize(mask: Any, palette: Palette, *, ignore_color: Sequence[int] = IGNORE_COLOR) -> np.ndarray:
    """Colour a label mask.

    Inputs:
        mask: (H, W) integer class ids 0..len(palette)-1 or IGNORE_INDEX (tensor or array).
        palette: one (r, g, b) per class, 0..255.
        ignore_color: colour of IGNORE_INDEX pixels (default grey).
    Returns:
        (H, W, 3) uint8 array.
    """
    m = _numpy(mask)
    if m.ndim != 2:
        raise ValueError(f"colorize expects one (H, W) mask, got shape {m.shape}")
    if not np.issubdtype(m.dtype, np.integer):
        raise TypeError(f"mask must hold integer class ids, got dtype {m.dtype}")
    n = len(palette)
    bad = ((m < 0) | (m >= n)) & (m != IGNORE_INDEX)
    if bad.any():
        raise ValueError(
            f"mask holds values {np.unique(m[bad])[:10].tolist()} outside 0..{n - 1} and the ignore index "
            f"{IGNORE_INDEX} (palette has {n} colours)"
        )
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:n] = np.asarray(palette, dtype=np.uint8).reshape(n, 3)
    lut[IGNORE_INDEX] = ignore_color
    return lut[m.astype(np.int64)]


def _hwc_uint8(image: Any) -> np.ndarray:
    """Inputs: (H,W,3) or (3,H,W) image, uint8 or float in [0, 1]. Returns: (H,W,3) uint8."""
    img = _numpy(image)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3) or (3, H, W), got shape {img.shape}")
    if img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
    return img


def overlay(image_uint8: Any, mask: Any, palette: Palette, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour mask over an image; ignored pixels show the plain image.

    Inputs:
        image_uint8: (H, W, 3) uint8 (also accepted: (3, H, W), or float in [0, 1]).
        mask: (H, W) class ids or IGNORE_INDEX.
        alpha: weight of the mask colour, 0 (image only) .. 1 (mask only).
    Returns:
        (H, W, 3) uint8 array.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = _hwc_uint8(image_uint8)
    m = _numpy(mask)
    if img.shape[:2] != m.shape:
        raise ValueError(f"image is {img.shape[:2]} but mask is {m.shape}")
    colour = colorize(m, palette).astype(np.float64)
    blended = (1 - alpha) * img.astype(np.float64) + alpha * colour
    out = np.where((m == IGNORE_INDEX)[..., None], img.astype(np.float64), blended)
    return out.round().astype(np.uint8)


def _denormalize(images: Any) -> np.ndarray:
    """Undo ImageNet normalisation for display.

    Inputs:
        images: (N, 3, H, W) or (3, H, W) float, normalised with IMAGENET_MEAN/STD.
    Returns:
        (N, H, W, 3) or (H, W, 3) uint8.
    """
    x = _numpy(images).astype(np.float64)
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"expected (N, 3, H, W) or (3, H, W) images, got shape {x.shape}")
    mean = np.asarray(IMAGENET_MEAN).reshape(3, 1, 1)
    std = np.asarray(IMAGENET_STD).reshape(3, 1, 1)
    x = np.clip(x * std + mean, 0.0, 1.0)
    x = np.moveaxis(x, -3, -1)
    return (x * 255).round().astype(np.uint8)


# Public name; show_predictions' `denormalize` keyword shadows it inside that function.
denormalize = _denormalize


def _legend_handles(palette: Palette, classes: Sequence[str], with_ignore: bool) -> list[Patch]:
    handles = [Patch(facecolor=np.asarray(c) / 255, edgecolor="black", label=name) for c, name in zip(palette, classes)]
    if with_ignore:
        handles.append(Patch(facecolor=np.asarray(IGNORE_COLOR) / 255, edgecolor="black", label="ignore"))
    return handles


def show_predictions(
    images: Any,
    masks: Any,
    preds: Any | None,
    *,
    palette: Palette,
    classes: Sequence[str],
    n: int = 4,
    denormalize: bool = True,
) -> Figure:
    """Grid of image / ground truth / prediction, one row per sample, with a colour legend.

    Inputs:
        images: (N, 3, H, W); ImageNet-normalised when denormalize=True, else uint8 or
            float in [0, 1] (also (N, H, W, 3)).
        masks, preds: (N, H, W) class ids (masks may hold IGNORE_INDEX). preds=None: no
            prediction column (training samples; `show_samples` says so by its name).
        palette, classes: colours and names, one per class.
        n: number of rows (at most N).
    Returns:
        Figure with min(n, N) * 3 axes (* 2 without predictions).
    """
    if len(palette) != len(classes):
        raise ValueError(f"palette has {len(palette)} colours but classes has {len(classes)} names")
    masks_np = _numpy(masks)
    preds_np = None if preds is None else _numpy(preds)
    rows = min(n, len(masks_np))
    if rows < 1:
        raise ValueError("nothing to show: no images, or n < 1")
    if len(images) < rows or (preds_np is not None and len(preds_np) < rows):
        raise ValueError(f"got {len(images)} images, {len(masks_np)} masks and {len(preds_np)} predictions")
    imgs = _denormalize(images[:rows]) if denormalize else [_hwc_uint8(im) for im in images[:rows]]

    titles = ("image", "ground truth") if preds_np is None else ("image", "ground truth", "prediction")
    fig, axes = plt.subplots(rows, len(titles), figsize=(3 * len(titles), 3 * rows), squeeze=False)
    for r in range(rows):
        panels = [imgs[r], colorize(masks_np[r], palette)]
        if preds_np is not None:
            panels.append(colorize(preds_np[r], palette))
        for ax, panel, title in zip(axes[r], panels, titles):
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title)
    with_ignore = bool((masks_np[:rows] == IGNORE_INDEX).any())
    handles = _legend_handles(palette, classes, with_ignore)
    ncol = min(6, len(handles))
    # Legend below the grid, inside the figure, so savefig without bbox_inches keeps it.
    legend_in = 0.3 * math.ceil(len(handles) / ncol) + 0.2
    fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False)
    fig.tight_layout(rect=(0, legend_in / (3 * rows), 1, 1))
    return _detached(fig)


def show_samples(
    images: Any, masks: Any, *, palette: Palette, classes: Sequence[str], n: int = 4, denormalize: bool = True
) -> Figure:
    """Grid of image / ground truth, one row per sample (training data, before any prediction)."""
    return show_predictions(images, masks, None, palette=palette, classes=classes, n=n, denormalize=denormalize)


def _history_dict(h: Any) -> dict[str, Any]:
    if hasattr(h, "as_dict"):
        return h.as_dict()
    if isinstance(h, Mapping):
        return dict(h)
    raise TypeError(f"expected a History or its as_dict(), got {type(h).__name__}")


def _finite_series(values: Sequence[Any] | None) -> tuple[list[int], list[float]]:
    """Epoch numbers (1-based) and values, skipping missing (None) entries."""
    pairs = [(i + 1, float(v)) for i, v in enumerate(values or []) if v is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_history(history_or_dict_of_histories: Any) -> Figure:
    """Loss and validation-mIoU curves of one run, or of several runs on shared axes.

    Inputs:
        a History (or History.as_dict()), or {run name: History} to compare runs.
    Returns:
        Figure with 2 axes: losses (train solid, val dashed) and val mIoU, per epoch.
    """
    h = history_or_dict_of_histories
    if hasattr(h, "as_dict") or (isinstance(h, Mapping) and "train_loss" in h):
        runs = {"": _history_dict(h)}
    elif isinstance(h, Mapping) and h:
        runs = {str(name): _history_dict(v) for name, v in h.items()}
    else:
        raise TypeError("expected a History, a History.as_dict(), or a non-empty {name: History} dict")

    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    any_miou = False
    for i, (name, d) in enumerate(runs.items()):
        colour = colours[i % len(colours)]
        prefix = f"{name} " if name else ""
        x, y = _finite_series(d.get("train_loss"))
        ax_loss.plot(x, y, "-o", color=colour, markersize=3, label=f"{prefix}train")
        x, y = _finite_series(d.get("val_loss"))
        if x:
            ax_loss.plot(x, y, "--o", color=colour, markersize=3, label=f"{prefix}val")
        x, y = _finite_series(d.get("val_miou"))
        if x:
            any_miou = True
            ax_miou.plot(x, y, "-o", color=colour, markersize=3, label=name or "val")
            best = d.get("best_epoch")
            if best is not None and 1 <= best <= len(d["val_miou"]):
                ax_miou.plot([best], [d["val_miou"][best - 1]], "*", color=colour, markersize=12)
    ax_loss.set(title="loss", xlabel="epoch", ylabel="loss")
    ax_loss.legend()
    ax_miou.set(title="validation mIoU (* best)", xlabel="epoch", ylabel="mIoU")
    if any_miou:
        ax_miou.legend()
    else:
        ax_miou.text(0.5, 0.5, "no validation", ha="center", va="center", transform=ax_miou.transAxes)
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _detached(fig)


def plot_iou_bars(iou_per_class_values: Any, classes: Sequence[str], *, title: str | None = None) -> Figure:
    """Bar chart of per-class IoU; NaN (class absent from ground truth and prediction) is marked "absent".

    Inputs:
        iou_per_class_values: (n_class,) floats in [0, 1] or NaN; classes: n_class names.
    Returns:
        Figure with 1 axes.
    """
    values = _numpy(iou_per_class_values).astype(np.float64).reshape(-1)
    if len(values) != len(classes):
        raise ValueError(f"{len(values)} IoU values but {len(classes)} class names")
    absent = np.isnan(values)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(classes) + 2), 4))
    x = np.arange(len(classes))
    bars = ax.bar(x, np.where(absent, 0.0, values), color="C0")
    for xi, bar, v, is_absent in zip(x, bars, values, absent):
        if is_absent:
            ax.text(xi, 0.02, "absent", ha="center", va="bottom", rotation=90, color="grey")
        else:
            ax.text(xi, bar.get_height() + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, list(classes), rotation=45, ha="right")
    ax.set(ylim=(0, 1.08), ylabel="IoU", title=title or "IoU per class")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _detached(fig)


def plot_confusion(conf: Any, classes: Sequence[str], *, normalize: bool = True) -> Figure:
    """Heatmap of a confusion matrix (rows = ground truth, columns = prediction).

    Inputs:
        conf: (n_class, n_class) counts; classes: n_class names.
        normalize: divide each row by its sum; rows with no pixels stay blank.
    Returns:
        Figure with 2 axes (heatmap and colour bar).
    """
    c = _numpy(conf).astype(np.float64)
    k = len(classes)
    if c.shape != (k, k):
        raise ValueError(f"confusion matrix has shape {c.shape}, expected ({k}, {k})")
    if normalize:
        rows = c.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(rows > 0, c / rows, np.nan)
    shown = np.ma.masked_invalid(c)
    fig, ax = plt.subplots(figsize=(0.5 * k + 3, 0.5 * k + 2.5))
    cmap = plt.get_cmap("Blues").with_extremes(bad="white")  # empty rows (NaN) drawn blank
    vmax = 1.0 if normalize else (float(np.nanmax(c)) if np.isfinite(c).any() else 1.0)
    im = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=vmax or 1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if k <= 15:  # cell labels become unreadable beyond that
        for i in range(k):
            for j in range(k):
                v = c[i, j]
                if math.isnan(v):
                    continue
                text = f"{v:.2f}" if normalize else f"{int(v)}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if v > 0.6 * vmax else "black")
    ax.set_xticks(range(k), list(classes), rotation=45, ha="right")
    ax.set_yticks(range(k), list(classes))
    title = "confusion (row-normalised)" if normalize else "confusion"
    ax.set(xlabel="predicted", ylabel="ground truth", title=title)
    fig.tight_layout()
    return _detached(fig)


def _cell(v: Any) -> str:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, (float, np.floating)):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    if v is None:
        return ""
    return str(v).replace("|", "\\|")


def results_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table comparing runs, without pandas.

    Inputs:
        rows: {run name: {column: value}}; columns are the union of keys in first-seen order,
            floats are printed with 4 decimals, NaN as "n/a", missing cells empty.
    Returns:
        str, e.g. display(Markdown(results_table(...))) or print it.
    """
    columns: list[str] = []
    for metrics in rows.values():
        for key in metrics:
            if key not in columns:
                columns.append(key)
    lines = [
        "| " + " | ".join(["run", *map(_cell, columns)]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for name, metrics in rows.items():
        cells = [_cell(name)] + [_cell(metrics.get(c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _spread_points(points: np.ndarray, k: int) -> list[int]:
    """Indices of k points far apart (greedy farthest-point selection from the point nearest the centre)."""
    if k <= 0 or len(points) == 0:
        return []
    chosen = [int(np.argmin(((points - points.mean(axis=0)) ** 2).sum(axis=1)))]
    distance = ((points - points[chosen[0]]) ** 2).sum(axis=1)
    while len(chosen) < min(k, len(points)):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, ((points - points[chosen[-1]]) ** 2).sum(axis=1))
    return chosen


def plot_embedding(
    points: Any,
    labels: Any,
    classes: Sequence[str],
    *,
    palette: Palette | None = None,
    thumbnails: Any = None,
    n_thumbnails: int = 12,
    thumbnail_px: int = 36,
    title: str | None = None,
) -> Figure:
    """Scatter plot of a 2-D embedding (e.g. t-SNE), points coloured by class, a few images drawn on it.

    Inputs:
        points: (N, 2) coordinates; labels: (N,) class ids indexing `classes`.
        palette: RGB triple per class (default: matplotlib's tab20 colours).
        thumbnails: optional uint8 (N, h, w, 3) RGB images of the points; `n_thumbnails` of them, at points
            spread over the plot, are drawn next to their point with a frame in the point's class colour.
        thumbnail_px: drawn size of a thumbnail's longer side, in screen pixels.
    Returns:
        Figure with 1 axes; the legend lists the classes present.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    xy = _numpy(points).astype(np.float64).reshape(-1, 2)
    ids = _numpy(labels).astype(np.int64).reshape(-1)
    if len(xy) != len(ids):
        raise ValueError(f"{len(xy)} points but {len(ids)} labels")
    if len(ids) and (ids.min() < 0 or ids.max() >= len(classes)):
        raise ValueError(f"labels must be in 0..{len(classes) - 1}")

    def colour(c: int) -> tuple[float, ...]:
        if palette is not None:
            return tuple(v / 255 for v in palette[c])
        return plt.get_cmap("tab20")(c % 20)

    fig, ax = plt.subplots(figsize=(8, 7))
    for c in np.unique(ids):
        where = ids == c
        ax.scatter(
            xy[where, 0],
            xy[where, 1],
            s=14,
            color=colour(int(c)),
            label=f"{classes[c]} ({where.sum()})",
            edgecolors="black",
            linewidths=0.2,
        )
    if thumbnails is not None:
        images = _numpy(thumbnails)
        if len(images) != len(xy):
            raise ValueError(f"{len(images)} thumbnails but {len(xy)} points")
        for i in _spread_points(xy, n_thumbnails):
            zoom = thumbnail_px / max(images[i].shape[:2])
            box = AnnotationBbox(
                OffsetImage(images[i], zoom=zoom),
                xy[i],
                frameon=True,
                pad=0.15,
                bboxprops={"edgecolor": colour(int(ids[i])), "linewidth": 2},
            )
            ax.add_artist(box)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    ax.set(xticks=[], yticks=[], title=title or "2-D embedding")
    fig.tight_layout()
    return _detached(fig)
