"""Synthetic segmentation scenes drawn with NumPy only (no torch import, so data scripts stay light).

``SyntheticScenes`` draws random shapes on a background: sample ``i`` as a uint8 image and mask.
``starter.data.SyntheticSegmentation`` is the torch ``Dataset`` over the same scenes, and
``python -m data_scripts.synthetic`` writes them to disk; both go through this one generator.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import numpy as np

from starter.constants import IGNORE_INDEX

__all__ = ["SyntheticScenes", "class_colour"]

# Class 0 is a dull grey background; every other class gets a hue spaced by the golden
# ratio (well separated for any count), its own stripe period and orientation, so colour
# AND texture identify a class, as in real data.
_GOLDEN_RATIO_CONJUGATE = 0.6180339887
_TEXTURE_AMPLITUDE = 0.10
_NOISE_STD = 0.04


def class_colour(class_index: int) -> tuple[float, float, float]:
    """Mean colour of a synthetic class. Returns: RGB in [0, 1], depending only on ``class_index``."""
    if class_index == 0:
        return (0.35, 0.35, 0.38)
    hue = (class_index * _GOLDEN_RATIO_CONJUGATE) % 1.0
    saturation = 0.85 if class_index % 2 else 0.55
    value = 0.95 if (class_index // 2) % 2 else 0.75
    return colorsys.hsv_to_rgb(hue, saturation, value)


def _class_texture(class_index: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Stripe pattern in [-1, 1] with a class-specific period and angle (class 0: flat)."""
    if class_index == 0:
        return np.zeros(np.broadcast_shapes(rows.shape, cols.shape))
    period_px = 4.0 + 3.0 * (class_index % 4)
    angle = math.radians((class_index * 47) % 180)
    phase = (cols * math.cos(angle) + rows * math.sin(angle)) / period_px
    return np.sin(2.0 * math.pi * phase)


def _draw_labels(rng: np.random.Generator, n_class: int, size: tuple[int, int]) -> np.ndarray:
    """Returns: uint8 (H, W) mask of 3..8 random shapes (rectangles, ellipses, bands) of classes 1..n_class-1."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width]
    mask = np.zeros((height, width), dtype=np.uint8)
    n_shapes = int(rng.integers(3, 9))
    for _ in range(n_shapes):
        class_index = int(rng.integers(1, n_class))
        kind = rng.choice(("rectangle", "ellipse", "stripe"))
        if kind == "rectangle":
            box_h = int(rng.uniform(0.15, 0.5) * height)
            box_w = int(rng.uniform(0.15, 0.5) * width)
            top = int(rng.integers(0, height - box_h + 1))
            left = int(rng.integers(0, width - box_w + 1))
            inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
        elif kind == "ellipse":
            centre_r, centre_c = rng.uniform(0, height), rng.uniform(0, width)
            radius_r = rng.uniform(0.08, 0.3) * height
            radius_c = rng.uniform(0.08, 0.3) * width
            inside = ((rows - centre_r) / radius_r) ** 2 + ((cols - centre_c) / radius_c) ** 2 <= 1.0
        else:  # a full-length horizontal or vertical band
            horizontal = bool(rng.integers(0, 2))
            extent = height if horizontal else width
            thickness = max(2, int(rng.uniform(0.06, 0.15) * extent))
            start = int(rng.integers(0, extent - thickness + 1))
            coordinate = rows if horizontal else cols
            inside = (coordinate >= start) & (coordinate < start + thickness)
        mask[inside] = class_index
    return mask


def _render(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inputs: uint8 (H, W) class mask. Returns: uint8 (H, W, 3) image, each class its colour and stripes."""
    height, width = mask.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.empty((height, width, 3), dtype=np.float64)
    for class_index in np.unique(mask):
        where = mask == class_index
        texture = _class_texture(int(class_index), rows[where], cols[where])
        image[where] = np.asarray(class_colour(int(class_index))) + _TEXTURE_AMPLITUDE * texture[:, None]
    # Per-image brightness and per-pixel noise: the net must not memorise exact colours.
    image *= rng.uniform(0.9, 1.1)
    image += rng.normal(0.0, _NOISE_STD, size=image.shape)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _frame_ignored(mask: np.ndarray, border: int) -> None:
    """Label a frame ``border`` pixels wide IGNORE_INDEX, in place."""
    mask[:border, :] = IGNORE_INDEX
    mask[-border:, :] = IGNORE_INDEX
    mask[:, :border] = IGNORE_INDEX
    mask[:, -border:] = IGNORE_INDEX


class SyntheticScenes:
    """Random shapes on a background: a segmentation task that needs no download.

    Sample ``i`` is generated from ``numpy.random.default_rng([seed, i])``, so it is the same
    on every call, in every process, whatever the access order. Class appearance (colour +
    stripe texture) depends only on the class index, never on the seed, so a train set
    (seed 0) and a validation set (seed 1) describe the same classes.

    Inputs:
        n_samples: number of samples.
        n_class: number of classes including background class 0 (2..255).
        size: (H, W) of every sample.
        seed: selects the samples.
        ignore_border: width in pixels of a frame labelled IGNORE_INDEX (0 = none).
        classes: optional class names (default "class0", "class1", ...).
    """

    def __init__(
        self,
        n_samples: int,
        n_class: int,
        size: Sequence[int] = (128, 160),
        *,
        seed: int = 0,
        ignore_border: int = 0,
        classes: Sequence[str] | None = None,
    ):
        if not 2 <= n_class < IGNORE_INDEX:
            raise ValueError(f"n_class must be in 2..{IGNORE_INDEX - 1} (class 0 is background), got {n_class}")
        if len(size) != 2 or min(size) < 8:
            raise ValueError(f"size must be (H, W) with both at least 8 pixels, got {size!r}")
        if classes is not None and len(classes) != n_class:
            raise ValueError(f"got {len(classes)} class names for n_class={n_class}")
        self.n_samples = int(n_samples)
        self.n_class = int(n_class)
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.ignore_border = int(ignore_border)
        self.classes = tuple(classes) if classes is not None else tuple(f"class{i}" for i in range(n_class))
        # Mean colour of every class as uint8 RGB: handy for plotting masks.
        self.palette = tuple(tuple(int(round(255 * channel)) for channel in class_colour(c)) for c in range(n_class))

    def __len__(self) -> int:
        return self.n_samples

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw sample ``index``.

        Returns:
            image uint8 (H, W, 3), mask uint8 (H, W) with values 0..n_class-1 or 255.
        """
        if not 0 <= index < self.n_samples:
            raise IndexError(f"index {index} out of range for {self.n_samples} samples")
        rng = np.random.default_rng([self.seed, index])
        mask = _draw_labels(rng, self.n_class, self.size)
        image = _render(mask, rng)
        if self.ignore_border > 0:
            _frame_ignored(mask, self.ignore_border)
        return image, mask
