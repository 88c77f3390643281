"""The U-Net notebook's given plumbing (starter.unet_notebook): what it loads, trains, prints and saves."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import starter.backbones
import starter.train
from starter.constants import ENV_RUNS, IGNORE_INDEX, SBD_CLASSES
from starter.expected import ExpectedRange
from starter.unet_notebook import (
    EncoderDecoder,
    ExperimentRunner,
    UnetExperiments,
    imagenet_run_allowed,
    imagenet_weights,
    load_unet_data,
    overfit_two_images,
    print_parameter_counts,
    train_own_loop,
)

IMAGE_SIZE, CROP = (32, 48), (16, 32)


def reference_functions() -> dict:
    """The notebook's metrics and training loop (the solution: tests only; nothing shipped holds it)."""
    from grader.assignments import load_assignment

    namespace: dict = {"torch": torch, "F": F, "IGNORE_INDEX": IGNORE_INDEX}
    for unit in load_assignment("unet").auto_units:
        if unit.grade_id in {"unet_confusion", "unet_iou", "unet_train_epoch"}:
            exec(unit.source, namespace)
    return namespace


def top_left_crop(image, mask, size):
    """A deterministic stand-in for the student's random_crop_flip."""
    return image[:, : size[0], : size[1]], mask[: size[0], : size[1]]


@pytest.fixture
def data(capsys):
    loaded = load_unet_data(IMAGE_SIZE, CROP, 2, crop_fn=top_left_crop, fast=True)
    capsys.readouterr()
    return loaded


def test_fast_data_crops_training_images_with_the_function_it_is_given(capsys):
    """In fast mode, are training pairs cut by crop_fn at CROP, evaluation pairs whole at IMAGE_SIZE, and does
    it say what it loaded?"""
    calls = []

    def crop_fn(image, mask, size):
        calls.append((tuple(image.shape), tuple(mask.shape), size))
        return top_left_crop(image, mask, size)

    data = load_unet_data(IMAGE_SIZE, CROP, 2, crop_fn=crop_fn, fast=True)
    printed = capsys.readouterr().out
    assert "Fast mode: a tiny synthetic dataset" in printed
    assert (
        "synthetic: train 6, val 2, test 2 images; resized to (32, 48), training crops (16, 32); 9 classes" in printed
    )
    image, mask = data.train_set[0]
    assert calls == [((3, *IMAGE_SIZE), IMAGE_SIZE, CROP)]
    assert image.shape == (3, *CROP) and mask.shape == CROP
    assert data.train_eval_set[0][0].shape == (3, *IMAGE_SIZE)
    assert data.name == "synthetic" and list(data.classes) == list(SBD_CLASSES) and data.n_class == len(SBD_CLASSES)
    images, masks = data.training_samples(2)
    assert images.shape == (2, 3, *CROP) and masks.shape == (2, *CROP)
    assert data.training_masks().shape == (6, *IMAGE_SIZE)
    assert len(data.train_loader) == 3 and data.train_loader.drop_last


def test_the_runner_builds_adam_at_lr_over_the_divisor_and_leaves_sgd_to_fit():
    """Does "adam" give Adam at lr / adam_lr_divisor, "sgd" no optimiser (fit's SGD), and any other name an error?"""
    model = nn.Conv2d(3, 2, 1)
    adam = ExperimentRunner(None, None, None, "adam", 10).make_optimizer(model, lr=0.01)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 0.01 / 10
    assert ExperimentRunner(None, None, None, "sgd", 10).make_optimizer(model, lr=0.01) is None
    with pytest.raises(ValueError, match="optimizer must be one of"):
        ExperimentRunner(None, None, None, "adamw", 10)


def test_an_experiment_trains_with_the_epoch_function_reports_and_is_loaded_the_second_time(
    data, tmp_path, monkeypatch, capsys
):
    """Does run_experiment train with the epoch function it is given, print the row and its range, save the
    result and the predictions figure, and load them instead of training again?"""
    monkeypatch.setenv(ENV_RUNS, str(tmp_path))
    reference = reference_functions()
    epochs_run = []

    def epoch_fn(*args):
        epochs_run.append(1)
        return reference["unet_train_epoch"](*args)

    experiments = UnetExperiments.open(
        "unet",
        data,
        1,
        "fast",
        "cpu",
        confusion_fn=reference["confusion_matrix"],
        miou_fn=reference["mean_iou"],
        iou_fn=reference["iou_per_class"],
    )
    assert f"runs folder: {tmp_path / 'unet'}" in capsys.readouterr().out
    expected = {"tiny": ExpectedRange(0.0, 1.0, "a test")}
    run_experiment = experiments.runner(
        loss_fn=None, epoch_fn=epoch_fn, optimizer="sgd", adam_lr_divisor=10, expected=expected
    )
    result = run_experiment("tiny", lambda: nn.Conv2d(3, data.n_class, 1), lr=0.01)
    printed = capsys.readouterr().out
    assert epochs_run == [1]
    assert f"tiny: test pixel accuracy {result.pixel_acc:.3f}, mIoU {result.miou:.3f}" in printed
    assert "tiny: test mIoU" in printed and "is inside the expected 0.00-1.00 (a test)" in printed
    assert {"result.json", "predictions.png"} <= {p.name for p in experiments.store.experiment_dir("tiny").iterdir()}

    again = run_experiment("tiny", lambda: nn.Conv2d(3, data.n_class, 1), lr=0.01)
    assert epochs_run == [1] and again.miou == result.miou
    assert "tiny: skipped: finished earlier" in capsys.readouterr().out

    uniform = torch.full((data.n_class, *IMAGE_SIZE), 1 / data.n_class)
    prior = experiments.evaluate_prior("prior", uniform, lambda p, n: p.unsqueeze(0).repeat(n, 1, 1, 1))
    printed = capsys.readouterr().out
    assert f"prior: test pixel accuracy {prior.pixel_acc:.3f}" in printed and "expected" not in printed
    assert prior.epochs_run == 0
    assert set(experiments.store.results()) == {"tiny", "prior"}


@pytest.mark.parametrize(
    ("profile", "cached", "allowed", "line"),
    [
        ("cpu", False, False, "ResNet-UNet ImageNet: skipped, no ImageNet weights at"),
        ("cpu", True, True, ""),
        ("fast", False, True, "Fast mode: the 'ImageNet' ResNet-UNet uses random weights (no download).\n"),
        ("full", False, True, ""),
    ],
)
def test_the_imagenet_run_is_skipped_only_in_the_cpu_profile_without_cached_weights(
    profile, cached, allowed, line, monkeypatch, capsys
):
    """Does the ImageNet experiment run unless the cpu profile lacks cached weights, saying why it does not?"""
    monkeypatch.setattr(starter.backbones, "is_cached", lambda weights: cached)
    assert imagenet_run_allowed(profile) is allowed
    printed = capsys.readouterr().out
    assert printed.startswith(line) and (printed == "") == (line == "")


def test_imagenet_weights_are_random_only_in_the_fast_profile(monkeypatch):
    """Does the fast profile ask for random weights (no download) and every other profile for ImageNet's?"""
    asked = []
    monkeypatch.setattr(starter.backbones, "load_resnet18_weights", lambda *, pretrained: asked.append(pretrained))
    for profile in ("fast", "cpu", "full"):
        imagenet_weights(profile)
    assert asked == [False, True, True]


def test_own_loop_runs_the_epoch_function_on_at_most_max_batches(capsys):
    """Does train_own_loop seed, build the model, call the epoch function once per epoch on at most max_batches
    batches with SGD at lr 0.01, and print each epoch's loss?"""
    loader = [(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)) for _ in range(3)]
    seen = []

    def epoch_fn(model, batches, optimizer, loss_fn, device):
        seen.append((len(list(batches)), type(optimizer).__name__, optimizer.param_groups[0]["lr"], loss_fn, device))
        return 1.5 / len(seen)

    def build():
        return nn.Conv2d(3, 2, 1)

    losses = train_own_loop(build, loader, "loss", epoch_fn=epoch_fn, device="cpu", max_batches=2, seed=3)
    assert seen == [(2, "SGD", 0.01, "loss", "cpu")] * 2 and losses == [1.5, 0.75]
    printed = capsys.readouterr().out
    assert "your loop, epoch 1: mean training loss 1.5000" in printed
    assert "your loop, epoch 2: mean training loss 0.7500" in printed
    torch.manual_seed(3)
    weight = build().weight.detach().clone()
    models = []
    train_own_loop(build, [], None, epoch_fn=lambda m, *args: models.append(m) or 0.0, device="cpu", seed=3)
    assert torch.equal(models[0].weight.detach(), weight)  # seeded with `seed` right before it is built


# The student's stubs, compiled as a notebook cell is ("<cell>": the student's code, not a file of the kit).
STUBS_CELL = """
import torch.nn as nn


class UNet(nn.Module):
    def __init__(self, n_class):
        raise NotImplementedError()


def unet_train_epoch(model, loader, optimizer, loss_fn, device):
    raise NotImplementedError()
"""


def test_given_runs_skip_with_one_line_while_a_unit_is_a_stub(capsys):
    """Do the own loop, the overfit test and the parameter counts print skip_if_undone's line and return None
    when they meet a student's stub, instead of stopping Run All?"""
    cell: dict = {}
    exec(compile(STUBS_CELL, "<cell>", "exec"), cell)
    batches = [(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))]
    own = train_own_loop(lambda: nn.Conv2d(3, 2, 1), batches, None, epoch_fn=cell["unet_train_epoch"], device="cpu")
    overfit = overfit_two_images(lambda: cell["UNet"](2), batches, loss_fn=None, epoch_fn=None, steps=1, device="cpu")
    assert own is None and overfit is None
    print_parameter_counts(lambda n: nn.Linear(n, n), cell["UNet"], lambda n: nn.Linear(n, n), n_class=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "skipped: your own training loop needs `unet_train_epoch`, which is not written yet; Run All continues",
        "skipped: the overfit test needs `UNet`, which is not written yet; Run All continues",
        "skipped: the parameter counts needs `UNet`, which is not written yet; Run All continues",
    ]


def test_overfit_two_images_draws_the_batch_before_building_the_model(monkeypatch, capsys):
    """Is the model built after the batch is drawn (the notebook's random draws keep their order), and is
    overfit_one_batch given the first two images with the student's loop?"""
    order = []

    class Loader:
        def __iter__(self):
            order.append("batch")
            yield torch.arange(4.0).view(4, 1), torch.arange(4).view(4, 1), "extra"

    def fake_overfit(model, batch, **kwargs):
        order.append(("overfit", model, [t.tolist() for t in batch], kwargs["epoch_fn"], kwargs["steps"]))
        return [2.0, 0.5]

    monkeypatch.setattr(starter.train, "overfit_one_batch", fake_overfit)
    overfit_two_images(
        lambda: order.append("model") or "model", Loader(), loss_fn=None, epoch_fn="loop", steps=3, device="cpu"
    )
    assert order == ["batch", "model", ("overfit", "model", [[[0.0], [1.0]], [[0], [1]]], "loop", 3)]
    assert "Overfit one batch: passed, the loss fell from 2.000 to 0.500 in 2 steps." in capsys.readouterr().out


def test_parameter_counts_split_the_resnet_unet_into_encoder_decoder_and_unused_fc(capsys):
    """Does print_parameter_counts print each model's parameters, built for n_class, and the ResNet-UNet's
    encoder (without fc), decoder and fc parts?"""

    class FakeResNetUNet(nn.Module):
        def __init__(self, n_class):
            super().__init__()
            self.encoder = nn.Module()
            self.encoder.body = nn.Linear(1999, 1000)  # 2.00 M
            self.encoder.fc = nn.Linear(999, 1000)  # 1.00 M
            self.decoder = nn.Linear(999, 500 * n_class)  # 0.50 M

    print_parameter_counts(lambda n: nn.Linear(999, 3000 * n), lambda n: nn.Linear(1, n), FakeResNetUNet, n_class=1)
    printed = capsys.readouterr().out
    assert "encoder-decoder (no skips):  3.00 M parameters" in printed
    assert "                     U-Net:  0.00 M parameters" in printed
    assert "               ResNet-UNet:  3.50 M parameters" in printed
    assert (
        "ResNet-UNet: 2.00 M in the ResNet-18 encoder, 0.50 M in your decoder, 1.00 M in the unused fc layer" in printed
    )


def test_the_encoder_decoder_keeps_any_input_size():
    """Does the given EncoderDecoder return (N, n_class, H, W) for sizes that pooling floors (odd, not /16)?"""
    model = EncoderDecoder(5, widths=(4, 8, 8, 8, 8)).eval()
    assert model(torch.randn(1, 3, 17, 23)).shape == (1, 5, 17, 23)
