"""Tests for starter.viz: colours are exact, every plot returns a Figure with the expected axes."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: no display needed

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from starter.constants import CMP_CLASSES, CMP_PALETTE, IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from starter.train import History
from starter.viz import (
    IGNORE_COLOR,
    colorize,
    denormalize,
    overlay,
    plot_confusion,
    plot_history,
    plot_iou_bars,
    results_table,
    show_predictions,
)

PALETTE = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
CLASSES = ("a", "b", "c")


def render(fig):
    fig.canvas.draw()  # catches errors that only show up when drawing


def test_colorize_maps_palette_exactly():
    mask = torch.tensor([[0, 1], [2, IGNORE_INDEX]])
    rgb = colorize(mask, PALETTE)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [255, 0, 0]
    assert rgb[0, 1].tolist() == [0, 255, 0]
    assert rgb[1, 0].tolist() == [0, 0, 255]
    assert rgb[1, 1].tolist() == list(IGNORE_COLOR)
    full = colorize(np.arange(len(CMP_PALETTE)).reshape(1, -1), CMP_PALETTE)
    assert full[0].tolist() == [list(c) for c in CMP_PALETTE]


def test_colorize_rejects_bad_values():
    with pytest.raises(ValueError, match="outside 0..2"):
        colorize(np.array([[0, 3]]), PALETTE)
    with pytest.raises(ValueError, match="outside"):
        colorize(np.array([[-1, 0]]), PALETTE)
    with pytest.raises(TypeError, match="integer"):
        colorize(np.zeros((2, 2), dtype=np.float32), PALETTE)


def test_overlay_blends_and_keeps_ignored_pixels():
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    mask = np.array([[0, 1], [2, IGNORE_INDEX]])
    assert np.array_equal(overlay(image, mask, PALETTE, alpha=0.0), image)
    full = overlay(image, mask, PALETTE, alpha=1.0)
    assert full[0, 0].tolist() == [255, 0, 0] and full[1, 1].tolist() == [100, 100, 100]
    half = overlay(image, mask, PALETTE, alpha=0.5)
    assert half.dtype == np.uint8 and half[0, 0].tolist() == [178, 50, 50]
    with pytest.raises(ValueError, match="mask is"):
        overlay(image, np.zeros((3, 3), dtype=np.int64), PALETTE)


def test_denormalize_inverts_imagenet_normalisation():
    rgb = torch.rand(2, 3, 4, 5)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = denormalize((rgb - mean) / std)
    assert out.shape == (2, 4, 5, 3) and out.dtype == np.uint8
    expected = (rgb.permute(0, 2, 3, 1).numpy() * 255).round()
    assert np.abs(out.astype(float) - expected).max() <= 1


@pytest.mark.parametrize("n, expected_rows", [(2, 2), (10, 3)])
def test_show_predictions_grid(n, expected_rows):
    images = torch.randn(3, 3, 8, 8)
    masks = torch.randint(0, len(CMP_CLASSES), (3, 8, 8))
    masks[0, 0, 0] = IGNORE_INDEX
    preds = torch.randint(0, len(CMP_CLASSES), (3, 8, 8))
    fig = show_predictions(images, masks, preds, palette=CMP_PALETTE, classes=CMP_CLASSES, n=n)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * expected_rows
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "ground truth", "prediction"]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [*CMP_CLASSES, "ignore"]
    render(fig)


def test_show_predictions_without_denormalize_and_mismatched_palette():
    images = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    masks = torch.zeros(2, 8, 8, dtype=torch.int64)
    fig = show_predictions(images, masks, masks, palette=PALETTE, classes=CLASSES, denormalize=False)
    assert len(fig.axes) == 6
    assert np.array_equal(fig.axes[0].images[0].get_array(), images[0].numpy())
    with pytest.raises(ValueError, match="palette has 3"):
        show_predictions(images, masks, masks, palette=PALETTE, classes=("a", "b"))


def test_plot_history_single_and_several_runs():
    h = History(
        train_loss=[1.0, 0.5, 0.4],
        val_loss=[1.1, 0.7, 0.6],
        val_miou=[0.2, 0.5, 0.4],
        val_pixel_acc=[0.5, 0.7, 0.7],
        lr=[0.1] * 3,
        epoch_time=[1.0] * 3,
        best_epoch=2,
        best_miou=0.5,
    )
    fig = plot_history(h)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["train", "val"]
    render(fig)

    no_val = History(train_loss=[1.0, 0.9])
    fig = plot_history({"fcn32": h, "fcn8": h.as_dict(), "scratch": no_val})
    assert len(fig.axes) == 2
    loss_labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert loss_labels == ["fcn32 train", "fcn32 val", "fcn8 train", "fcn8 val", "scratch train"]
    miou_labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert miou_labels == ["fcn32", "fcn8"]
    render(fig)
    with pytest.raises(TypeError):
        plot_history([1, 2, 3])


def test_plot_iou_bars_marks_absent_classes():
    fig = plot_iou_bars(torch.tensor([0.5, float("nan"), 0.9]), CLASSES, title="val IoU")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "val IoU"
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.5, 0.0, 0.9])
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("absent") == 1 and "0.50" in texts
    render(fig)
    with pytest.raises(ValueError, match="3 class names"):
        plot_iou_bars([0.1, 0.2], CLASSES)


def test_plot_confusion_row_normalised_and_nan_safe():
    conf = torch.tensor([[8, 2, 0], [0, 0, 0], [1, 1, 2]])  # class b never in the ground truth
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division-by-zero or NaN warnings
        fig = plot_confusion(conf, CLASSES)
        render(fig)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # heatmap + colour bar
    shown = fig.axes[0].images[0].get_array()
    assert shown[0].tolist() == pytest.approx([0.8, 0.2, 0.0])
    assert shown.mask[1].all()  # the empty row stays blank instead of 0 or NaN colours
    fig = plot_confusion(conf, CLASSES, normalize=False)
    assert "8" in [t.get_text() for t in fig.axes[0].texts]
    with pytest.raises(ValueError, match="expected"):
        plot_confusion(conf, CLASSES[:2])


def test_plots_do_not_accumulate_pyplot_figures():
    before = len(plt.get_fignums())
    plot_iou_bars([0.1, 0.2, 0.3], CLASSES)
    plot_history(History(train_loss=[1.0]))
    assert len(plt.get_fignums()) == before


def test_results_table_markdown():
    table = results_table(
        {
            "fcn32": {"mIoU": 0.41234, "pixel acc": 0.8, "epochs": 30},
            "fcn8": {"mIoU": float("nan"), "params": "15M"},
        }
    )
    lines = table.splitlines()
    assert lines[0] == "| run | mIoU | pixel acc | epochs | params |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[2] == "| fcn32 | 0.4123 | 0.8000 | 30 |  |"
    assert lines[3] == "| fcn8 | n/a |  |  | 15M |"
