"""A labelled image set cut from segmentation data: square patches named by their majority class.

The CAM notebook embeds such patches with t-SNE: CMP Facade photographs cut into patches, each labelled
by the class that covers most of it (window, facade, shop, ...), give an image classification set without
any download beyond the segmentation data the kit already fetches::

    images, labels = majority_class_crops(pairs, size=64, per_class=50)

The plot is ``starter.viz.plot_embedding``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from tqdm.auto import tqdm

from starter.constants import IGNORE_INDEX

__all__ = ["majority_class_crops"]


def _grid(length: int, size: int, stride: int) -> range:
    """Window starts 0, stride, ... that fit entirely inside `length` (no flush window: patches are samples)."""
    return range(0, length - size + 1, stride)


def majority_class_crops(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    size: int,
    *,
    per_class: int,
    n_class: int,
    stride: int | None = None,
    min_share: float = 0.6,
    ignore_index: int = IGNORE_INDEX,
    seed: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Square patches of (image, mask) pairs, each labelled by the class that covers most of it.

    A patch is kept only when its majority class covers at least `min_share` of all its pixels (ignored
    pixels count against it), so that the label describes what the patch shows. From every class at most
    `per_class` patches are kept, drawn uniformly at random among all of that class's patches (reservoir
    sampling: one pass, memory for `per_class` patches per class only).

    Inputs:
        pairs: iterable of (image uint8 (H, W, 3), mask integer (H, W) of class ids or `ignore_index`).
        size: patch side in pixels.
        per_class: the most patches kept per class.
        n_class: number of classes (labels are 0..n_class-1).
        stride: step of the grid of windows (default `size`: no overlap).
        min_share: smallest share of the patch's pixels its majority class must cover, in (0, 1].
        ignore_index: mask value of unlabelled pixels.
        seed: seeds the random choice.
        progress: show a progress bar over the pairs.
    Returns:
        images: uint8 (N, size, size, 3); labels: int64 (N,); sorted by label, each class's patches in the
        order they were met. Classes with no qualifying patch are absent.
    """
    if size < 1 or per_class < 1 or n_class < 1:
        raise ValueError(f"size, per_class and n_class must be positive, got {size}, {per_class}, {n_class}")
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    stride = size if stride is None else stride
    rng = np.random.default_rng(seed)
    kept: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(n_class)]  # per class: (arrival index, patch)
    seen = np.zeros(n_class, dtype=np.int64)
    for image, mask in tqdm(pairs, desc="crops", disable=not progress):
        image, mask = np.asarray(image), np.asarray(mask).astype(np.int64)
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != mask.shape:
            raise ValueError(f"expected an (H, W, 3) image and an (H, W) mask, got {image.shape} and {mask.shape}")
        for top in _grid(mask.shape[0], size, stride):
            for left in _grid(mask.shape[1], size, stride):
                window = mask[top : top + size, left : left + size]
                labelled = window[(window != ignore_index) & (window >= 0) & (window < n_class)]
                if labelled.size == 0:
                    continue
                counts = np.bincount(labelled, minlength=n_class)
                label = int(counts.argmax())
                if counts[label] < min_share * window.size:
                    continue
                patch = image[top : top + size, left : left + size].copy()
                arrival = int(seen[label])
                seen[label] += 1
                if arrival < per_class:
                    kept[label].append((arrival, patch))
                else:
                    slot = int(rng.integers(0, arrival + 1))  # reservoir sampling: uniform over all seen
                    if slot < per_class:
                        kept[label][slot] = (arrival, patch)
    images, labels = [], []
    for label, entries in enumerate(kept):
        for _, patch in sorted(entries, key=lambda entry: entry[0]):
            images.append(patch)
            labels.append(label)
    if not images:
        raise ValueError("no patch qualified: lower min_share or size, or check the masks")
    return np.stack(images).astype(np.uint8), np.asarray(labels, dtype=np.int64)
