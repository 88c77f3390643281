"""The FCN notebook's given plumbing (starter.fcn_notebook): what it prints, trains and saves."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import ResNet18_Weights

from starter.constants import CITYSCAPES_TRAIN_CLASSES, IGNORE_INDEX
from starter.expected import ExpectedRange
from starter.fcn_notebook import (
    FcnTraining,
    facade_data,
    kitti_loaders,
    print_fcn32s_sizes,
    print_interpolation_table,
    trace_sizes,
    try_overfitting,
)
from starter.runs import RunSettings, RunStore

# The FCN-32s layer table of the notebook's locked cell (section 1.4).
CONV3, POOL, SCORE = ("conv", 3, 1, 1), ("pool", 2, 2, 0), ("conv", 1, 1, 0)
INPUT_TO_POOL3 = [("conv", 3, 1, 100), CONV3, POOL, CONV3, CONV3, POOL, CONV3, CONV3, CONV3, POOL]
INPUT_TO_FC7 = INPUT_TO_POOL3 + [CONV3, CONV3, CONV3, POOL] + [CONV3, CONV3, CONV3, POOL, ("conv", 7, 1, 0), SCORE]
FCN32S = INPUT_TO_FC7 + [SCORE, ("transposed", 64, 32, 0)]


def torch_size(size, kernel, stride=1, padding=0, transposed=False, ceil_mode=False):
    """The size PyTorch itself gives (a stand-in for the student's conv_output_size)."""
    x = torch.zeros(1, 1, 1, size)
    if transposed:
        layer = torch.nn.ConvTranspose2d(1, 1, (1, kernel), (1, stride), (0, padding))
    elif ceil_mode:
        layer = torch.nn.MaxPool2d((1, kernel), (1, stride), (0, padding), ceil_mode=True)
    else:
        layer = torch.nn.Conv2d(1, 1, (1, kernel), (1, stride), (0, padding))
    return layer(x).shape[-1]


# Reference metrics stand in for the student's (tests are trusted code; nothing here ships).
def confusion(pred, target, n_class, ignore_index=IGNORE_INDEX):
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = (target != ignore_index) & (target >= 0) & (target < n_class)
    return torch.bincount(target[keep] * n_class + pred[keep], minlength=n_class**2).reshape(n_class, n_class)


def iou(conf):
    conf = conf.double()
    return (conf.diag() / (conf.sum(0) + conf.sum(1) - conf.diag())).float()


def miou(conf):
    return float(torch.nanmean(iou(conf)))


def test_trace_sizes_follows_fcn32s_as_pytorch_does():
    """Does trace_sizes give PyTorch's size after every layer, pools in ceil mode (pool3 25, fc7 1 for a 1-pixel input)?"""
    sizes = trace_sizes(1, FCN32S, size_fn=torch_size)
    assert len(sizes) == len(FCN32S) + 1
    assert (sizes[10], sizes[14], sizes[-3], sizes[-1]) == (25, 13, 1, 64)


def test_print_fcn32s_sizes_says_whether_upscore_covers_the_crop(capsys):
    """Does each input height get one line with pool3, pool4, fc7, upscore and the coverage test?"""
    print_fcn32s_sizes(FCN32S, (1, 500), crop=19, size_fn=torch_size)
    assert capsys.readouterr().out.splitlines() == [
        "input   1: pool3 25, pool4 13, fc7 1, upscore 64 >= 19 + 1: True",
        "input 500: pool3 88, pool4 44, fc7 16, upscore 544 >= 19 + 500: True",
    ]


def test_interpolation_table_matches_the_transposed_convolution(capsys):
    """Does the table put each transposed-convolution output beside x interpolated at u = (m - 1.5) / 2?"""
    x = torch.tensor([1.0, 4.0, 2.0])
    out = torch.nn.functional.conv_transpose1d(x[None, None], torch.tensor([[[0.25, 0.75, 0.75, 0.25]]]), stride=2)
    print_interpolation_table(x, out[0, 0], stride=2, kernel=4)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("  m   u = (m - 1.5) / 2")
    assert len(lines) == 1 + 8
    rows = [[float(v) for v in line.split()] for line in lines[1:]]
    assert rows[0] == [0, -0.75, 0.25, 0.25] and rows[4] == [4, 1.25, 3.5, 3.5]
    assert all(row[2] == row[3] for row in rows)


def test_facade_data_in_fast_mode(capsys):
    """Does fast mode give synthetic 6/2/2 images of the size asked, say so, and shuffle only the training loader?"""
    data = facade_data(32, 2, 0, train_images=None, decode_colours=lambda rgb, palette: None, fast=True)
    printed = capsys.readouterr().out
    assert "Fast mode" in printed and "synthetic: train 6, val 2, test 2 images of 32x32; 12 classes" in printed
    assert data.name == "synthetic" and len(data.classes) == 12
    images, masks = next(iter(data.loaders["val"]))
    assert tuple(images.shape) == (2, 3, 32, 32) and tuple(masks.shape) == (2, 32, 32)
    samplers = {split: type(loader.sampler).__name__ for split, loader in data.loaders.items()}
    assert samplers == {"train": "RandomSampler", "val": "SequentialSampler", "test": "SequentialSampler"}


def test_kitti_loaders_fast_and_missing(tmp_path, monkeypatch, capsys):
    """Does fast mode give a 19-class stand-in of the exact (height, width), and a missing KITTI None with a line?"""
    loaders = kitti_loaders((16, 48), 2, 0, classes=CITYSCAPES_TRAIN_CLASSES, fast=True)
    assert "KITTI: train 4, val 2, test 2 images of 16x48; 19 classes" in capsys.readouterr().out
    assert tuple(next(iter(loaders["test"]))[0].shape) == (2, 3, 16, 48)
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    assert kitti_loaders((16, 48), 2, 0, classes=CITYSCAPES_TRAIN_CLASSES, fast=False) is None
    assert capsys.readouterr().out.startswith("Section 11 is skipped: ")


def test_try_overfitting_builds_the_model_after_drawing_the_batch(monkeypatch, capsys):
    """Does overfit_one_batch get two images of the first batch and a model built after the batch was drawn (the
    notebook's order of random draws), and is the loss printed?"""
    import starter.train

    order = []
    batch = (torch.zeros(4, 3, 8, 8), torch.zeros(4, 8, 8, dtype=torch.long))

    def loader():
        order.append("batch")
        yield batch

    def build():
        order.append("model")
        return torch.nn.Conv2d(3, 2, 1)

    def fake_overfit(model, one_batch, *, steps, device):
        assert [tuple(t.shape) for t in one_batch] == [(2, 3, 8, 8), (2, 8, 8)]
        return [2.0, 1.0, 0.5][:steps]

    monkeypatch.setattr(starter.train, "overfit_one_batch", fake_overfit)
    assert try_overfitting(build, loader(), steps=3, device="cpu") == [2.0, 1.0, 0.5]
    assert order == ["batch", "model"]
    assert "the loss fell from 2.000 to 0.500 in 3 steps" in capsys.readouterr().out


def _training(tmp_path, data, profile="fast", expected=None, optimizer="sgd"):
    settings = RunSettings("synthetic", 32, 3, profile, "cpu", data.classes, data.palette)
    return FcnTraining(
        RunStore(tmp_path), settings, data.loaders, "cpu", confusion_fn=confusion, miou_fn=miou, iou_fn=iou,
        optimizer=optimizer, fast=True, expected=expected,
    )  # fmt: skip


def test_budget_small_and_fast(tmp_path):
    """Is a small budget 1 epoch of 4 batches, and a normal run the settings' epochs, one step each in fast mode?"""
    data = facade_data(32, 2, 0, train_images=None, decode_colours=lambda rgb, palette: None, fast=True)
    training = _training(tmp_path, data)
    assert training.budget(True) == (1, 4) and training.budget(False) == (3, 1)
    training.fast = False
    assert training.budget(False) == (3, None)


def test_run_trains_saves_reports_and_loads_the_second_time(tmp_path, capsys):
    """Does run train, save a row (its planned epochs, the student's per-class IoU, a predictions figure), report it
    against its range, and load it instead of training the second time?"""
    data = facade_data(32, 2, 0, train_images=None, decode_colours=lambda rgb, palette: None, fast=True)
    expected = {"tiny": ExpectedRange(0.0, 1.0, "a test range")}
    training = _training(tmp_path, data, expected=expected, optimizer="adam")
    result = training.run("tiny", lambda: torch.nn.Conv2d(3, 12, 1), (1e-3, 1e-3), small_budget=True)
    printed = capsys.readouterr().out
    assert "tiny: test pixel accuracy" in printed and "is inside the expected 0.00-1.00 (a test range)" in printed
    assert (result.epochs_run, result.epochs_planned, result.image_size) == (1, 1, "32x32")
    assert list(result.per_class_iou) == list(data.classes)
    assert (tmp_path / "tiny" / "predictions.png").is_file()
    again = training.run("tiny", lambda: pytest.fail("a finished run must not be built again"), (1e-3, 1e-3))
    assert again.miou == result.miou and "skipped: finished earlier" in capsys.readouterr().out


def test_run_without_ranges_reports_nothing(tmp_path, capsys):
    """Does a table without expected ranges (KITTI's) print the result line only?"""
    data = facade_data(32, 2, 0, train_images=None, decode_colours=lambda rgb, palette: None, fast=True)
    _training(tmp_path, data).run("tiny", lambda: torch.nn.Conv2d(3, 12, 1), (1e-3, None))
    printed = capsys.readouterr().out
    assert "tiny: test pixel accuracy" in printed and "expected" not in printed


def test_cpu_profile_skips_imagenet_runs_without_cached_weights(tmp_path, monkeypatch, capsys):
    """Does the cpu profile skip a run whose ImageNet weights are not cached, naming the file, without building it?"""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    data = facade_data(32, 2, 0, train_images=None, decode_colours=lambda rgb, palette: None, fast=True)
    training = _training(tmp_path / "runs", data, profile="cpu")
    capsys.readouterr()

    def build():
        pytest.fail("a skipped run must not build its model")

    assert training.run("ImageNet", build, (1e-3, 1e-4), ResNet18_Weights.IMAGENET1K_V1) is None
    printed = capsys.readouterr().out
    assert printed.startswith("ImageNet: skipped, no ImageNet weights at ") and str(tmp_path / "torch") in printed


def test_run_skips_a_model_that_is_still_a_stub(tmp_path, capsys):
    """Does run return None with the skip line when the student's model is still its stub?"""
    namespace: dict = {}
    exec(
        compile("class FCN32s:\n    def __init__(self):\n        raise NotImplementedError()\n", "<cell>", "exec"),
        namespace,
    )
    data = facade_data(32, 2, 0, train_images=None, decode_colours=lambda rgb, palette: None, fast=True)
    assert _training(tmp_path, data).run("FCN-32s", namespace["FCN32s"], (1e-3, 1e-4)) is None
    assert "skipped: FCN-32s needs `FCN32s`" in capsys.readouterr().out
    assert not list(tmp_path.glob("*/result.json"))
