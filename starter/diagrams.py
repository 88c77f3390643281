"""Architecture diagrams drawn with matplotlib: the FCN-8s skips and the U-Net.

Each function returns a matplotlib Figure detached from pyplot (as in starter.viz), so the
last line of a notebook cell displays it once. Boxes are layers or feature maps, arrows the
data flow; labels give strides, channel counts and crop offsets the notebooks state in words.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

# Fill colours: the encoder/trunk, score layers, upsampling, fusion and the output.
TRUNK_COLOR = "#cfe2f3"
SCORE_COLOR = "#fce5cd"
UP_COLOR = "#d9ead3"
FUSE_COLOR = "#fff2cc"
OUTPUT_COLOR = "#ead1dc"
BOX_WIDTH = 1.5
BOX_HEIGHT = 0.7


def _box(ax, x: float, y: float, text: str, color: str, *, width: float = BOX_WIDTH, height: float = BOX_HEIGHT):
    """A rounded box centred at (x, y) with a centred multi-line label."""
    patch = FancyBboxPatch(
        (x - width / 2, y - height / 2),
        width,
        height,
        boxstyle="round,pad=0.02,rounding_size=0.08",
        facecolor=color,
        edgecolor="#444444",
        linewidth=1.0,
    )
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], label: str = "", *, offset=(0.0, 0.12)):
    """An arrow from start to end, optionally labelled at its middle (shifted by `offset`)."""
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "#333333", "lw": 1.2})
    if label:
        middle = ((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1])
        ax.text(*middle, label, ha="center", va="bottom", fontsize=8, color="#7f0000")


def _finish(fig: Figure, ax, title: str, xlim: tuple[float, float], ylim: tuple[float, float]) -> Figure:
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    plt.close(fig)  # detached: no double display in Jupyter
    return fig


def fcn8s_skip_figure(crops: Sequence[int] = (5, 9, 31)) -> Figure:
    """The FCN-8s skip structure: VGG16 trunk on top, score layers and fusions below.

    Inputs:
    - crops: (pool4 skip, pool3 skip, final) crop offsets written on the diagram

    Returns:
    - fig: matplotlib Figure
    """
    crop_pool4, crop_pool3, crop_final = crops
    fig, ax = plt.subplots(figsize=(13, 5.2))
    top, middle, bottom = 3.0, 1.6, 0.2
    step = 1.85
    trunk = [
        ("input\nH x W", "1/1"),
        ("conv1 + pool1", "1/2"),
        ("conv2 + pool2", "1/4"),
        ("conv3 + pool3", "1/8"),
        ("conv4 + pool4", "1/16"),
        ("conv5 + pool5", "1/32"),
        ("fc6, fc7", "1/32"),
    ]
    for i, (text, stride) in enumerate(trunk):
        _box(ax, i * step, top, text, OUTPUT_COLOR if i == 0 else TRUNK_COLOR)
        ax.text(i * step, top + 0.5, f"stride {stride}", ha="center", fontsize=8, color="#1f3b73")
        if i:
            _arrow(ax, ((i - 1) * step + BOX_WIDTH / 2, top), (i * step - BOX_WIDTH / 2, top))
    x_pool3, x_pool4, x_fc7 = 3 * step, 4 * step, 6 * step
    # Score layers under pool3, pool4 and fc7.
    _box(ax, x_pool3, middle, "score_pool3\n1x1 conv", SCORE_COLOR)
    _box(ax, x_pool4, middle, "score_pool4\n1x1 conv", SCORE_COLOR)
    _box(ax, x_fc7, middle, "score_fr\n1x1 conv", SCORE_COLOR)
    for x in (x_pool3, x_pool4, x_fc7):
        _arrow(ax, (x, top - BOX_HEIGHT / 2), (x, middle + BOX_HEIGHT / 2))
    # Decoder, right to left along the bottom row.
    x_up2 = 5 * step
    _box(ax, x_up2, bottom, "upscore2\nx2 (1/16)", UP_COLOR)
    _arrow(ax, (x_fc7, middle - BOX_HEIGHT / 2), (x_up2 + BOX_WIDTH / 2, bottom))
    _box(ax, x_pool4, bottom, "+", FUSE_COLOR, width=0.5, height=0.5)
    _arrow(ax, (x_up2 - BOX_WIDTH / 2, bottom), (x_pool4 + 0.25, bottom))
    _arrow(ax, (x_pool4, middle - BOX_HEIGHT / 2), (x_pool4, bottom + 0.25), f"crop {crop_pool4}", offset=(0.5, -0.1))
    x_up4 = 3.5 * step
    _box(ax, x_up4, bottom - 1.2, "upscore_pool4\nx2 (1/8)", UP_COLOR)
    _arrow(ax, (x_pool4, bottom - 0.25), (x_up4 + 0.3, bottom - 1.2 + BOX_HEIGHT / 2))
    _box(ax, x_pool3, bottom, "+", FUSE_COLOR, width=0.5, height=0.5)
    _arrow(ax, (x_up4 - 0.3, bottom - 1.2 + BOX_HEIGHT / 2), (x_pool3, bottom - 0.25))
    _arrow(ax, (x_pool3, middle - BOX_HEIGHT / 2), (x_pool3, bottom + 0.25), f"crop {crop_pool3}", offset=(0.5, -0.1))
    x_up8 = 1.5 * step
    _box(ax, x_up8, bottom, "upscore8\nx8 (1/1)", UP_COLOR)
    _arrow(ax, (x_pool3 - 0.25, bottom), (x_up8 + BOX_WIDTH / 2, bottom))
    _box(ax, 0, bottom, "scores\nn_class x H x W", OUTPUT_COLOR)
    _arrow(ax, (x_up8 - BOX_WIDTH / 2, bottom), (BOX_WIDTH / 2, bottom), f"crop {crop_final}")
    ax.text(
        x_fc7 + BOX_WIDTH / 2,
        bottom - 1.2,
        "crop k: keep pixels k ... k + size - 1\n(aligns two maps of the same stride)",
        ha="right",
        va="center",
        fontsize=8,
        color="#7f0000",
    )
    return _finish(
        fig,
        ax,
        "FCN-8s: skips from pool4 (stride 1/16) and pool3 (1/8) refine the 1/32 scores",
        (-1.0, x_fc7 + 1.0),
        (bottom - 1.8, top + 0.9),
    )


def unet_skip_figure(channels: Sequence[int] = (64, 128, 256, 512, 1024)) -> Figure:
    """The U-Net: encoder blocks down the left, decoder blocks up the right, skips across.

    Inputs:
    - channels: output channels of the encoder blocks, top to bottom (the last is the bottleneck)

    Returns:
    - fig: matplotlib Figure
    """
    depth = len(channels) - 1  # number of poolings
    fig, ax = plt.subplots(figsize=(11, 6.5))
    left, right, level_step = 0.0, 3.6 + 1.6 * depth, 1.3
    for level, width in enumerate(channels[:-1]):
        y = -level * level_step
        x_left, x_right = left + 0.8 * level, right - 0.8 * level
        _box(ax, x_left, y, f"DoubleConv\n{width} ch", TRUNK_COLOR)
        _box(ax, x_right, y, f"DoubleConv\n{width} ch", UP_COLOR)
        ax.text(x_left - BOX_WIDTH / 2 - 0.1, y, f"1/{2**level}", ha="right", va="center", fontsize=9, color="#1f3b73")
        _arrow(
            ax, (x_left + BOX_WIDTH / 2, y), (x_right - BOX_WIDTH / 2, y), f"skip: concatenate ({width} + {width} ch)"
        )
        below_left, below_right = x_left + 0.8, x_right - 0.8
        _arrow(
            ax,
            (x_left, y - BOX_HEIGHT / 2),
            (below_left, y - level_step + BOX_HEIGHT / 2),
            "max pool 2x2",
            offset=(-0.75, -0.1),
        )
        _arrow(
            ax,
            (below_right, y - level_step + BOX_HEIGHT / 2),
            (x_right, y - BOX_HEIGHT / 2),
            f"up-conv 2x2\n{channels[level + 1]} -> {width} ch",
            offset=(0.95, -0.25),
        )
    y = -depth * level_step
    x_mid = (left + right) / 2
    bottleneck_width = right - left - 1.6 * depth + 0.4
    _box(ax, x_mid, y, f"bottleneck\n{channels[-1]} ch", SCORE_COLOR, width=bottleneck_width)
    ax.text(
        x_mid - bottleneck_width / 2 - 0.1, y, f"1/{2**depth}", ha="right", va="center", fontsize=9, color="#1f3b73"
    )
    _box(ax, right + 2.0, 0, "1x1 conv\nn_class", OUTPUT_COLOR, width=1.2)
    _arrow(ax, (right + BOX_WIDTH / 2, 0), (right + 1.4, 0))
    ax.text(
        x_mid,
        0.75,
        "up-sampled maps are zero-padded to the skip's size (odd sizes) before concatenating",
        ha="center",
        fontsize=8,
        color="#7f0000",
    )
    return _finish(
        fig,
        ax,
        f"U-Net: {depth} poolings, channels {'-'.join(map(str, channels))}",
        (left - 1.6, right + 3.0),
        (y - 0.9, 1.2),
    )
