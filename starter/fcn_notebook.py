"""The given plumbing of the FCN notebook: size traces, data loaders, model loading and the experiment runner.

Nothing here builds an FCN, copies VGG16's weights, computes an output size, a crop offset, a confusion
matrix or an IoU by itself: where a step is a graded unit the helper takes the student's function or
class as an argument and calls it::

    build = partial(fcn_on_vgg16, FCN8s, N_CLASS, copy_fn=copy_params_from_vgg16, pretrained=True)
    training = FcnTraining(store, SETTINGS, loaders, device, confusion_fn=confusion_matrix, miou_fn=mean_iou,
                           iou_fn=iou_per_class)
    training.run("FCN-8s VGG16", build, (1e-4, 1e-5), VGG16_Weights.IMAGENET1K_V1)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Subset

from starter.runs import ExperimentResult, RunSettings, RunStore, run_or_load

__all__ = [
    "FacadeData",
    "FcnTraining",
    "facade_data",
    "fcn_on_resnet18",
    "fcn_on_vgg16",
    "kitti_loaders",
    "print_fcn32s_sizes",
    "print_interpolation_table",
    "print_parameter_counts",
    "show_colour_round_trip",
    "trace_sizes",
    "try_overfitting",
]

SPLITS = ("train", "val", "test")
Layer = tuple[str, int, int, int]  # (kind, kernel, stride, padding), as in the notebook's layer tables


# --- section 1: transposed convolutions and sizes -------------------------------------------------


def print_interpolation_table(x: torch.Tensor, out: torch.Tensor, *, stride: int, kernel: int) -> None:
    """Each output pixel of a 1-D transposed convolution beside x linearly interpolated where it lies.

    Inputs:
        x: (L,) the input; out: (stride * (L - 1) + kernel,) the transposed convolution's output.
        stride, kernel: the convolution's; output pixel m lies over u = (m - (kernel - 1) / 2) / stride.
    The borders blend with a zero on either side of x (what the missing neighbour counts as).
    """
    center = (kernel - 1) / 2
    positions = np.arange(-1, len(x) + 1)
    values = np.concatenate([[0.0], np.asarray(x, dtype=float), [0.0]])
    print(f"  m   u = (m - {center:g}) / {stride}   transposed conv   linear interpolation of x at u")
    for m, value in enumerate(torch.as_tensor(out).tolist()):
        u = (m - center) / stride
        print(f"{m:3d}   {u:17.2f}   {value:15.2f}   {np.interp(u, positions, values):28.2f}")


def trace_sizes(size: int, table: Sequence[Layer], *, size_fn: Callable[..., int]) -> list[int]:
    """Sizes along one dimension after each layer of a table (pools in ceil mode, as in FCN).

    Inputs:
        size: the input size; table: (kind, kernel, stride, padding) per layer, kind "conv", "pool" or
            "transposed"; size_fn: the student's conv_output_size.
    Returns:
        [size, size after layer 1, ..., size after the last layer]: len(table) + 1 ints.
    """
    sizes = [size]
    for kind, kernel, stride, padding in table:
        size = size_fn(size, kernel, stride, padding, transposed=kind == "transposed", ceil_mode=kind == "pool")
        sizes.append(size)
    return sizes


def print_fcn32s_sizes(
    table: Sequence[Layer], heights: Sequence[int], *, crop: int, size_fn: Callable[..., int]
) -> None:
    """One line per input height: FCN-32s's pool3, pool4, fc7 and upscore sizes, and whether upscore covers
    the crop (`crop` + height pixels). `table` is INPUT_TO_FC7 + [SCORE, upscore]: pool3 is its 10th layer,
    pool4 its 14th, fc7 the third from the end."""
    for height in heights:
        sizes = trace_sizes(height, table, size_fn=size_fn)
        print(
            f"input {height:3d}: pool3 {sizes[10]}, pool4 {sizes[14]}, fc7 {sizes[-3]}, "
            f"upscore {sizes[-1]} >= {crop} + {height}: {sizes[-1] >= crop + height}"
        )


def print_parameter_counts(builders: Mapping[str, Callable[[], nn.Module]]) -> None:
    """Each model's parameters in millions (and fc6's, where it has one); each model is freed before the next."""
    from starter.notebook import count_parameters

    for name, build in builders.items():
        model = build()
        fc6 = (
            f", of which fc6 {count_parameters(model.get_submodule('fc6')) / 1e6:.1f}M" if hasattr(model, "fc6") else ""
        )
        print(f"{name}: {count_parameters(model) / 1e6:.1f}M parameters{fc6}")
        del model


# --- section 8: data ------------------------------------------------------------------------------


def show_colour_round_trip(
    *, to_index: Callable[..., np.ndarray], to_rgb: Callable[..., np.ndarray], size: int = 2000
) -> None:
    """The student's rgb_to_index and index_to_rgb on a random land-cover mask (size x size) with a cloud.

    Prints the time rgb_to_index takes, what the cloud (black: "unknown") decodes to and whether every
    other pixel comes back to its class.
    """
    from starter.constants import LANDCOVER_CLASSES, LANDCOVER_PALETTE, LANDCOVER_UNKNOWN_RGB

    rng = np.random.default_rng(0)
    land_ids = rng.integers(0, len(LANDCOVER_CLASSES), size=(size, size))
    colour_mask = to_rgb(land_ids, LANDCOVER_PALETTE)
    colour_mask[:200, :300] = LANDCOVER_UNKNOWN_RGB  # a cloud: black, "unknown", not a class
    started = time.perf_counter()
    decoded = to_index(colour_mask, LANDCOVER_PALETTE)
    seconds = time.perf_counter() - started
    print(
        f"rgb_to_index: {size}x{size} mask in {seconds:.3f} s; the cloud -> {np.unique(decoded[:200, :300]).tolist()}; "
        f"every other pixel back to its class: {bool((decoded[200:] == land_ids[200:]).all())}"
    )


@dataclass(frozen=True)
class FacadeData:
    """The datasets and loaders of sections 8-10: `loaders` maps "train", "val", "test" to DataLoaders of
    (images (B, 3, S, S), masks (B, S, S)); `name` is the dataset's ("synthetic" in fast mode)."""

    name: str
    classes: Sequence[str]
    palette: Sequence[Sequence[int]]
    sets: dict[str, Dataset[Any]]
    loaders: dict[str, DataLoader[Any]]


def _loaders(sets: Mapping[str, Dataset[Any]], batch_size: int, workers: int) -> dict[str, DataLoader[Any]]:
    """A DataLoader per split; only the training one shuffles."""
    return {
        split: DataLoader(data, batch_size=batch_size, shuffle=split == "train", num_workers=workers)
        for split, data in sets.items()
    }


def facade_data(
    image_size: int,
    batch_size: int,
    workers: int,
    *,
    train_images: int | None,
    decode_colours: Callable[..., np.ndarray],
    fast: bool,
) -> FacadeData:
    """CMP Facade (or the dataset $SEGKIT_DATASET names) resized and padded to image_size, or in fast mode a
    tiny synthetic stand-in; prints what it loaded.

    Inputs:
        train_images: train on the first this many images at most (None: all).
        decode_colours: the student's rgb_to_index, for a dataset whose masks are colour-coded.
    """
    from starter.constants import CMP_CLASSES, CMP_PALETTE
    from starter.data import SyntheticSegmentation, chosen_dataset, dataset_spec
    from starter.transforms import eval_preset, train_preset

    name: str
    classes: Sequence[str]
    palette: Sequence[Sequence[int]]
    sets: dict[str, Dataset[Any]]
    if fast:
        print("Fast mode: a tiny synthetic dataset stands in for CMP Facade; the numbers below are not meaningful.")
        name, classes, palette = "synthetic", CMP_CLASSES, CMP_PALETTE
        size = (image_size, image_size)
        sets = {
            split: SyntheticSegmentation(n, len(classes), size, seed=seed)
            for split, n, seed in zip(SPLITS, (6, 2, 2), range(3))
        }
    else:
        spec = dataset_spec(chosen_dataset("cmp_facade"))  # $SEGKIT_DATASET swaps the dataset
        name, classes, palette = spec.name, spec.classes, spec.palette
        presets = {
            "train": train_preset(size=image_size),
            "val": eval_preset(size=image_size),
            "test": eval_preset(size=image_size),
        }
        sets = {split: spec.dataset(split, presets[split], decode_colours=decode_colours) for split in SPLITS}
        if train_images is not None:  # the cpu profile trains on the first images at most
            sets["train"] = Subset(sets["train"], range(min(train_images, len(sets["train"]))))
    print(
        f"{name}: train {len(sets['train'])}, val {len(sets['val'])}, test {len(sets['test'])} images of "
        f"{image_size}x{image_size}; {len(classes)} classes"
    )
    return FacadeData(name, classes, palette, sets, _loaders(sets, batch_size, workers))


def kitti_loaders(
    size: tuple[int, int], batch_size: int, workers: int, *, classes: Sequence[str], fast: bool
) -> dict[str, DataLoader[Any]] | None:
    """KITTI's loaders, images resized to exactly `size` (height, width), or in fast mode a tiny synthetic
    19-class stand-in; prints what it loaded.

    Returns:
        {"train", "val", "test": DataLoader of (images (B, 3, h, w), masks (B, h, w))}; None, with a line
        saying why, when KITTI is not prepared.
    """
    from starter.data import SyntheticSegmentation, dataset_spec
    from starter.transforms import Compose, Normalize, Resize, ToTensor

    sets: dict[str, Dataset[Any]]
    if fast:
        print("Fast mode: a tiny synthetic 19-class set stands in for KITTI; the numbers below are not meaningful.")
        sets = {
            split: SyntheticSegmentation(n, len(classes), size, seed=seed, classes=classes)
            for split, n, seed in zip(SPLITS, (4, 2, 2), (10, 11, 12))
        }
    else:
        try:
            kitti = dataset_spec("kitti")
        except FileNotFoundError as error:
            print(f"Section 11 is skipped: {error}")
            return None
        transforms = Compose([Resize(size), ToTensor(), Normalize()])  # an exact size: no padding
        sets = {split: kitti.dataset(split, transforms) for split in SPLITS}
    print(
        "KITTI: "
        + ", ".join(f"{split} {len(data)}" for split, data in sets.items())
        + f" images of {size[0]}x{size[1]}; {len(classes)} classes"
    )
    return _loaders(sets, batch_size, workers)


# --- section 9: models and training ---------------------------------------------------------------


def fcn_on_vgg16(
    model_class: Callable[[int], nn.Module],
    n_class: int,
    *,
    copy_fn: Callable[[nn.Module, nn.Module], None],
    pretrained: bool,
) -> nn.Module:
    """model_class(n_class) with the student's copy_params_from_vgg16 (`copy_fn`) applied from torchvision's
    VGG16: ImageNet weights through the weights API and its cache when `pretrained` (a missing file raises
    PretrainedWeightsUnavailable, which says where to put it), random ones otherwise (no download)."""
    from starter.backbones import load_vgg16

    model = model_class(n_class)
    copy_fn(model, load_vgg16(pretrained=pretrained))
    return model


def fcn_on_resnet18(
    model_class: Callable[..., nn.Module], n_class: int, variant: str, *, pretrained: bool
) -> nn.Module:
    """model_class(n_class, variant, weights=...): the student's FCNResNet18 on torchvision's ResNet-18, from
    ImageNet weights (weights API and cache, as fcn_on_vgg16) when `pretrained`, from scratch otherwise."""
    from starter.backbones import load_resnet18_weights

    return model_class(n_class, variant, weights=load_resnet18_weights(pretrained=pretrained))


def try_overfitting(
    build_model: Callable[[], nn.Module], loader: DataLoader[Any], *, steps: int, device: Any
) -> list[float]:
    """overfit_one_batch on the first two images of the loader's first batch: a copy of build_model() trains;
    prints the loss before and after. The model is built after the batch is drawn, so that the random draws
    (the shuffle, the initial weights) come in the notebook's order.

    Returns: the losses. Raises: OverfitError (with the usual causes) when the loss does not fall enough.
    """
    from starter.train import overfit_one_batch

    one_batch = [t[:2] for t in next(iter(loader))[:2]]  # two images are enough, and quick
    losses = overfit_one_batch(build_model(), one_batch, steps=steps, device=device)
    print(f"Overfit one batch: passed, the loss fell from {losses[0]:.3f} to {losses[-1]:.3f} in {len(losses)} steps.")
    return losses


@dataclass
class FcnTraining:
    """Trains and tests the experiments of one results table (section 9, or KITTI's in section 11).

    Inputs:
        store: the runs folder of the table; settings: what its rows share (settings.epochs: the epochs
            of a normal run; settings.profile "cpu" skips the ImageNet runs whose weights are not cached).
        loaders: {"train", "val", "test": DataLoader}; device: where to train.
        confusion_fn, miou_fn, iou_fn: the student's confusion_matrix, mean_iou and iou_per_class.
        optimizer: "sgd" (fit's SGD with momentum) or "adam".
        fast: one step per epoch and no progress bars.
        expected: {name: ExpectedRange}: each result is reported against its range; None: not reported.
    """

    store: RunStore
    settings: RunSettings
    loaders: Mapping[str, DataLoader[Any]]
    device: Any
    confusion_fn: Callable[..., Any]
    miou_fn: Callable[..., Any]
    iou_fn: Callable[..., Any]
    optimizer: str = "sgd"
    fast: bool = False
    expected: Mapping[str, Any] | None = None

    def budget(self, small: bool) -> tuple[int, int | None]:
        """Returns: (epochs, steps per epoch): 1 epoch of 4 batches for a small budget, else the settings'
        epochs (one step each in fast mode, whole epochs otherwise)."""
        if small:
            return 1, 4
        return self.settings.epochs, 1 if self.fast else None

    def run(
        self,
        name: str,
        build_model: Callable[[], nn.Module],
        lrs: tuple[float, float | None],
        imagenet: Any = None,
        *,
        small_budget: bool = False,
    ) -> ExperimentResult | None:
        """Train build_model() with fit (or load its finished result), test it, print (and report) its mIoU.

        Inputs:
            lrs: (SGD's learning rate, Adam's), the one of self.optimizer is used.
            imagenet: the torchvision weights enum the model needs, or None.
            small_budget: 1 epoch of 4 batches (what shows that a model runs, not what it learns).
        Returns:
            the results row; None when the run is skipped (no cached weights in the cpu profile, or a unit
            still a stub: run_or_load says so).
        """
        from starter.backbones import is_cached, weights_cache_path

        if imagenet is not None and self.settings.profile == "cpu" and not is_cached(imagenet):
            print(f"{name}: skipped, no ImageNet weights at {weights_cache_path(imagenet)} (cpu profile: no download)")
            return None
        epochs, steps = self.budget(small_budget)
        sgd_lr, adam_lr = lrs

        def train(checkpoint_path: Path) -> ExperimentResult:
            from starter.notebook import evaluate_row
            from starter.train import fit

            model = build_model()
            optimizer = None
            if self.optimizer == "adam":
                if adam_lr is None:
                    raise ValueError(f"{name}: the Adam optimizer needs a learning rate, lrs=(SGD's, Adam's)")
                optimizer = torch.optim.Adam(model.parameters(), lr=adam_lr)
            history = fit(
                model,
                self.loaders["train"],
                self.loaders["val"],
                n_class=len(self.settings.classes),
                epochs=epochs,
                lr=sgd_lr,
                optimizer=optimizer,
                confusion_fn=self.confusion_fn,
                miou_fn=self.miou_fn,
                scheduler="plateau",
                early_stopping_patience=5,
                checkpoint_path=checkpoint_path,
                resume=True,
                device=self.device,
                max_steps_per_epoch=steps,
                progress=not self.fast,
            )
            return evaluate_row(
                name,
                model,
                self.loaders["test"],
                replace(self.settings, epochs=epochs),
                confusion_fn=self.confusion_fn,
                miou_fn=self.miou_fn,
                iou_fn=self.iou_fn,
                history=history,
                store=self.store,
            )

        result = run_or_load(self.store, name, train)
        if result is not None:  # None: training met a unit that is still a stub (run_or_load said so)
            print(f"{name}: test pixel accuracy {result.pixel_acc:.3f}, mIoU {result.miou:.3f}")
            if self.expected is not None:
                from starter.expected import report_against_expected

                report_against_expected(name, result.miou, self.expected.get(name))
        return result
