"""The given parts of the U-Net notebook: its data, its experiments in the runs folder, the comparison model.

Nothing here crops, trains an epoch or scores by itself: where a step is a graded unit (``random_crop_flip``,
``unet_train_epoch``, ``confusion_matrix``, ``mean_iou``, ``iou_per_class``, the models) the helper takes the
student's function or class as an argument and calls it::

    data = load_unet_data(IMAGE_SIZE, CROP, BATCH_SIZE, crop_fn=random_crop_flip, ...)
    experiments = UnetExperiments.open("unet", data, EPOCHS, PROFILE, device, confusion_fn=confusion_matrix,
                                       miou_fn=mean_iou, iou_fn=iou_per_class)
    run_experiment = experiments.runner(loss_fn=loss_fn, epoch_fn=unet_train_epoch, optimizer=OPTIMIZER, ...)
    run_experiment("U-Net", lambda: UNet(N_CLASS), lr=0.01)

The given cells that need graded units (the own loop, the overfit test, the experiments, the parameter counts)
print skip_if_undone's one line while one of them is still a stub, so that Run All carries on.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from starter.constants import SBD_CLASSES, SBD_PALETTE
from starter.expected import ExpectedRange, report_against_expected
from starter.notebook import PriorModel, count_parameters, evaluate_row, skip_if_undone
from starter.runs import ExperimentResult, RunSettings, RunStore, run_or_load, runs_dir
from starter.transforms import Compose, Normalize, Resize, ToTensor

__all__ = [
    "OPTIMIZERS",
    "EncoderDecoder",
    "ExperimentRunner",
    "UnetData",
    "UnetExperiments",
    "imagenet_run_allowed",
    "imagenet_weights",
    "load_unet_data",
    "overfit_two_images",
    "print_parameter_counts",
    "train_own_loop",
]

OPTIMIZERS = ("sgd", "adam")  # sgd: fit's SGD with momentum at lr; adam: Adam at lr / adam_lr_divisor
Pair = tuple[torch.Tensor, torch.Tensor]


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


@dataclass
class UnetData:
    """The notebook's data sets and loaders (section 7).

    Attributes:
        name: the dataset's name ("synthetic" in fast mode), recorded in every results row.
        classes, palette: class names and RGB colours, index i = class i.
        image_size: (H, W) every image is resized to; crop: (h, w) of the training crops.
        train_set: training pairs, image (3, h, w) float and mask (h, w) int64, cropped and flipped by the
            student's crop function; train_eval_set: the same images at (H, W), uncropped.
        val_set, test_set: pairs at (H, W).
        train_loader (shuffled, last incomplete batch dropped), val_loader, test_loader: batches of them.
    """

    name: str
    classes: Sequence[str]
    palette: Sequence[tuple[int, int, int]]
    image_size: tuple[int, int]
    crop: tuple[int, int]
    train_set: Dataset
    train_eval_set: Dataset
    val_set: Dataset
    test_set: Dataset
    train_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader

    @property
    def n_class(self) -> int:
        return len(self.classes)

    def training_samples(self, n: int) -> Pair:
        """The first `n` training pairs, freshly cropped and flipped: images (n, 3, h, w), masks (n, h, w)."""
        images, masks = next(iter(DataLoader(self.train_set, batch_size=n)))
        return images, masks

    def training_masks(self) -> torch.Tensor:
        """Every training mask at the evaluation size (uncropped): int64 (N, H, W)."""
        return torch.stack([self.train_eval_set[i][1] for i in range(len(self.train_eval_set))])


def _crop_after(image: Any, mask: Any, *, resize: Compose, crop: tuple[int, int], crop_fn: Callable) -> Pair:
    """Resize and normalise the pair, then the student's crop_fn(image (3, H, W), mask (H, W), crop)."""
    image, mask = resize(image, mask)
    return crop_fn(image, mask, crop)


def load_unet_data(
    image_size: tuple[int, int],
    crop: tuple[int, int],
    batch_size: int,
    *,
    crop_fn: Callable[[torch.Tensor, torch.Tensor, tuple[int, int]], Pair],
    train_images: int | None = None,
    fast: bool = False,
    workers: int = 0,
    default_dataset: str = "stanford_background",
) -> UnetData:
    """The data sets and loaders of the U-Net notebook; prints what it loaded.

    Inputs:
        image_size: (H, W) every image is resized to (bilinear; nearest neighbour for the mask).
        crop: (h, w) of the training crops, cut by `crop_fn`.
        batch_size: images per batch.
        crop_fn: the student's random_crop_flip(image (3, H, W), mask (H, W), size) -> (image, mask) cropped.
        train_images: train on the first `train_images` training images at most (None: all).
        fast: a tiny synthetic data set (6 training, 2 validation, 2 test images) instead of the real one.
        workers: loader processes (0: load in the notebook's process).
        default_dataset: the prepared dataset used unless $SEGKIT_DATASET names another.
    Returns:
        UnetData.
    """
    from starter.data import SyntheticSegmentation, chosen_dataset, dataset_spec

    eval_transforms = Compose([Resize(image_size), ToTensor(), Normalize()])
    train_transforms = functools.partial(_crop_after, resize=eval_transforms, crop=crop, crop_fn=crop_fn)
    if fast:
        print("Fast mode: a tiny synthetic dataset stands in for the real data; the numbers below are not meaningful.")
        name, classes, palette = "synthetic", SBD_CLASSES, SBD_PALETTE
        make = functools.partial(SyntheticSegmentation, n_class=len(classes), size=image_size, classes=classes)
        train_set = make(6, seed=0, transforms=train_transforms)
        train_eval_set = make(6, seed=0, transforms=eval_transforms)  # the same images, uncropped
        val_set, test_set = make(2, seed=1, transforms=eval_transforms), make(2, seed=2, transforms=eval_transforms)
    else:
        spec = dataset_spec(chosen_dataset(default_dataset))
        name, classes, palette = spec.name, spec.classes, spec.palette
        train_set = spec.dataset("train", train_transforms)
        train_eval_set = spec.dataset("train", eval_transforms)
        val_set, test_set = spec.dataset("val", eval_transforms), spec.dataset("test", eval_transforms)
        if train_images is not None:
            train_set = Subset(train_set, range(min(train_images, len(train_set))))
            train_eval_set = Subset(train_eval_set, range(len(train_set)))
    data = UnetData(
        name=name,
        classes=classes,
        palette=palette,
        image_size=image_size,
        crop=crop,
        train_set=train_set,
        train_eval_set=train_eval_set,
        val_set=val_set,
        test_set=test_set,
        train_loader=DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True),
        val_loader=DataLoader(val_set, batch_size=batch_size, num_workers=workers),
        test_loader=DataLoader(test_set, batch_size=batch_size, num_workers=workers),
    )
    print(
        f"{name}: train {len(train_set)}, val {len(val_set)}, test {len(test_set)} images; "
        f"resized to {image_size}, training crops {crop}; {data.n_class} classes"
    )
    return data


# --------------------------------------------------------------------------------------
# The student's loop on its own, and the overfit test
# --------------------------------------------------------------------------------------


def train_own_loop(
    build_model: Callable[[], nn.Module],
    loader: Iterable,
    loss_fn: Callable,
    *,
    epoch_fn: Callable,
    device: torch.device | str,
    epochs: int = 2,
    max_batches: int | None = None,
    seed: int = 0,
    lr: float = 0.01,
    momentum: float = 0.9,
) -> list[float] | None:
    """Train a fresh model with the student's epoch function alone (no fit), printing each epoch's mean loss.

    Skipped, with skip_if_undone's line ("your own training loop needs ..."), while a unit it meets is a stub.

    Inputs:
        build_model: builds the model (after seeding every generator with `seed`); moved to `device` here.
        loader: yields (images (B, 3, h, w), masks (B, h, w)) batches.
        loss_fn: loss_fn(logits, masks) -> scalar tensor.
        epoch_fn: the student's unet_train_epoch(model, batches, optimizer, loss_fn, device) -> mean loss per sample.
        epochs: passes over the loader; max_batches: batches per pass at most (None: all).
        lr, momentum: of the SGD optimiser.
    Returns:
        the mean training loss of each epoch; None when skipped.
    """
    from starter.config import seed_everything

    with skip_if_undone("your own training loop"):
        seed_everything(seed)
        model = build_model().to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        losses = []
        for epoch in range(epochs):
            start = time.time()
            mean_loss = epoch_fn(model, itertools.islice(loader, max_batches), optimizer, loss_fn, device)
            print(f"your loop, epoch {epoch + 1}: mean training loss {mean_loss:.4f} ({time.time() - start:.1f} s)")
            losses.append(mean_loss)
        return losses
    return None


def overfit_two_images(
    build_model: Callable[[], nn.Module],
    loader: Iterable,
    *,
    loss_fn: Callable,
    epoch_fn: Callable,
    steps: int,
    device: torch.device | str,
) -> list[float] | None:
    """starter.train.overfit_one_batch on the first two images of the loader's next batch; prints that it passed.

    Skipped, with skip_if_undone's line ("the overfit test needs ..."), while a unit it meets is a stub.

    Inputs:
        build_model: builds the model to test (called after the batch is drawn, so the random draws keep
            their order); loader: yields (images, masks) batches of at least two.
        loss_fn, epoch_fn: the student's loss and unet_train_epoch; steps: optimisation steps.
    Returns:
        the loss after each step (overfit_one_batch raises, with the usual causes, when it does not fall);
        None when skipped.
    """
    from starter.train import overfit_one_batch

    with skip_if_undone("the overfit test"):
        one_batch = [t[:2] for t in next(iter(loader))[:2]]  # two images are enough, and quick
        model = build_model()
        losses = overfit_one_batch(model, one_batch, loss_fn=loss_fn, epoch_fn=epoch_fn, steps=steps, device=device)
        print(
            f"Overfit one batch: passed, the loss fell from {losses[0]:.3f} to {losses[-1]:.3f} in {len(losses)} steps."
        )
        return losses
    return None


# --------------------------------------------------------------------------------------
# Experiments in the runs folder
# --------------------------------------------------------------------------------------


def _print_row(result: ExperimentResult) -> None:
    print(
        f"{result.name}: test pixel accuracy {result.pixel_acc:.3f}, mIoU {result.miou:.3f}, "
        f"mAP {result.extra['mAP']:.3f}"
    )


@dataclass
class UnetExperiments:
    """The notebook's runs folder and how every results row is tested, with the student's metrics.

    Attributes:
        store: the runs folder; data: UnetData (its loaders train and test).
        settings: what every row shares (dataset, sizes, epochs, profile, device, classes, palette).
        device: where models train and are tested.
        confusion_fn, miou_fn, iou_fn: the student's confusion_matrix, mean_iou and iou_per_class.
    """

    store: RunStore
    data: UnetData
    settings: RunSettings
    device: torch.device | str
    confusion_fn: Callable
    miou_fn: Callable
    iou_fn: Callable

    @classmethod
    def open(
        cls,
        assignment: str,
        data: UnetData,
        epochs: int,
        profile: str,
        device: torch.device | str,
        *,
        confusion_fn: Callable,
        miou_fn: Callable,
        iou_fn: Callable,
    ) -> UnetExperiments:
        """The experiments of `assignment` in its runs folder (``starter.runs.runs_dir``), which it prints."""
        store = RunStore(runs_dir(assignment))
        print(f"runs folder: {store.root}")
        settings = RunSettings(data.name, data.image_size, epochs, profile, str(device), data.classes, data.palette)
        return cls(store, data, settings, device, confusion_fn, miou_fn, iou_fn)

    def test_result(self, name: str, model: nn.Module, history: Any = None) -> ExperimentResult:
        """One row of the results tables: test metrics and AP per class with the student's functions; saves a
        predictions figure in the experiment's folder."""
        return evaluate_row(
            name,
            model,
            self.data.test_loader,
            self.settings,
            confusion_fn=self.confusion_fn,
            miou_fn=self.miou_fn,
            iou_fn=self.iou_fn,
            history=history,
            store=self.store,
            with_ap=True,
        )

    def evaluate(self, name: str, model: nn.Module) -> ExperimentResult | None:
        """Test an untrained model (the per-pixel prior) once, or load its row; prints its test metrics.

        Returns: the row; None when a unit it needs is still a stub (run_or_load says so)."""
        result = run_or_load(self.store, name, lambda checkpoint_path: self.test_result(name, model))
        if result is not None:
            _print_row(result)
        return result

    def evaluate_prior(
        self, name: str, prior: torch.Tensor, predict_fn: Callable[[torch.Tensor, int], torch.Tensor]
    ) -> ExperimentResult | None:
        """evaluate() of the student's fitted prior (n_class, H, W) as a PriorModel, which ignores its input and
        returns log(predict_fn(prior, n)) for a batch of n images."""
        return self.evaluate(name, PriorModel(prior, predict_fn))

    def runner(
        self,
        *,
        loss_fn: Callable,
        epoch_fn: Callable,
        optimizer: str,
        adam_lr_divisor: float,
        expected: Mapping[str, ExpectedRange],
    ) -> ExperimentRunner:
        """run_experiment(name, build_model, lr): see ExperimentRunner."""
        return ExperimentRunner(self, loss_fn, epoch_fn, optimizer, adam_lr_divisor, dict(expected))


@dataclass
class ExperimentRunner:
    """Trains one experiment with starter.train.fit (or loads its finished row) and reports it.

    Called as ``run_experiment(name, build_model, lr)``: fit trains ``build_model()`` for the settings' epochs
    with the student's `epoch_fn` (unet_train_epoch), `loss_fn` and metrics, validation mIoU after every
    epoch, the plateau schedule, early stopping after 8 epochs without progress and a checkpoint after every
    epoch (a run cut off resumes). Then it prints the test metrics and how the test mIoU compares with
    ``expected[name]`` (starter.expected.report_against_expected; "no expected range" when absent).

    Attributes:
        optimizer: "sgd" (fit's SGD with momentum at lr) or "adam" (Adam at lr / adam_lr_divisor).
        expected: experiment name -> the test mIoU range a correct implementation reaches.
    """

    experiments: UnetExperiments
    loss_fn: Callable
    epoch_fn: Callable
    optimizer: str
    adam_lr_divisor: float
    expected: dict[str, ExpectedRange] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")

    def make_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer | None:
        """Adam at lr / adam_lr_divisor for "adam"; None for "sgd" (fit then builds its SGD at lr)."""
        if self.optimizer == "adam":
            return torch.optim.Adam(model.parameters(), lr=lr / self.adam_lr_divisor)
        return None

    def train(self, name: str, model: nn.Module, lr: float, checkpoint_path: Path) -> ExperimentResult:
        """Train `model` with fit (resuming from `checkpoint_path`'s state), then test it."""
        from starter.train import fit

        experiments = self.experiments
        fast = experiments.settings.profile == "fast"
        history = fit(
            model,
            experiments.data.train_loader,
            experiments.data.val_loader,
            n_class=experiments.data.n_class,
            epochs=experiments.settings.epochs,
            lr=lr,
            loss_fn=self.loss_fn,
            optimizer=self.make_optimizer(model, lr),
            epoch_fn=self.epoch_fn,
            confusion_fn=experiments.confusion_fn,
            miou_fn=experiments.miou_fn,
            scheduler="plateau",
            early_stopping_patience=8,
            checkpoint_path=checkpoint_path,
            resume=True,
            device=experiments.device,
            max_steps_per_epoch=2 if fast else None,
            progress=not fast,
        )
        return experiments.test_result(name, model, history)

    def __call__(self, name: str, build_model: Callable[[], nn.Module], lr: float) -> ExperimentResult | None:
        """Train build_model() (or load the finished row) and report it.

        Returns: the row; None when training met a unit that is still a stub (run_or_load said so)."""
        store = self.experiments.store
        result = run_or_load(store, name, lambda checkpoint_path: self.train(name, build_model(), lr, checkpoint_path))
        if result is not None:
            _print_row(result)
            report_against_expected(name, result.miou, self.expected.get(name))
        return result


# --------------------------------------------------------------------------------------
# The comparison model, the ImageNet experiment, parameter counts
# --------------------------------------------------------------------------------------


class EncoderDecoder(nn.Module):
    """U-Net's shape without skip connections: 4 poolings down, 4 transposed convolutions up (given).

    Inputs to forward: x, float (N, in_channels, H, W). Returns: scores, float (N, n_class, H, W).
    """

    def __init__(self, n_class: int, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256, 512, 1024)):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        pairs = list(zip(widths[:-1], widths[1:]))
        self.encoder = nn.ModuleList([block(in_channels, widths[0])] + [block(a, b) for a, b in pairs])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in pairs][::-1])
        self.decoder = nn.ModuleList([block(a, a) for a in widths[:-1]][::-1])
        self.head = nn.Conv2d(widths[0], n_class, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = []
        for i, layer in enumerate(self.encoder):
            if i > 0:
                sizes.append(x.shape[-2:])
                x = F.max_pool2d(x, 2)
            x = layer(x)
        for up, layer, size in zip(self.ups, self.decoder, reversed(sizes)):
            x = up(x)
            x = F.pad(x, [0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]])  # back to the encoder's size
            x = layer(x)
        return self.head(x)


def imagenet_run_allowed(profile: str) -> bool:
    """Whether the "ResNet-UNet ImageNet" experiment runs in this profile; prints a line when it does not,
    and in fast mode that its "ImageNet" weights are random.

    The cpu profile downloads nothing: it runs only when the weights are already in torchvision's cache.
    """
    from torchvision.models import ResNet18_Weights

    from starter.backbones import is_cached, weights_cache_path

    weights = ResNet18_Weights.IMAGENET1K_V1
    if profile == "cpu" and not is_cached(weights):
        print(
            f"ResNet-UNet ImageNet: skipped, no ImageNet weights at {weights_cache_path(weights)} "
            "(cpu profile: no download)"
        )
        return False
    if profile == "fast":
        print("Fast mode: the 'ImageNet' ResNet-UNet uses random weights (no download).")
    return True


def imagenet_weights(profile: str) -> Any:
    """The ResNet-18 ImageNet weights for ``ResNetUNet(n_class, weights=...)``: downloaded on first use, random
    ones (no download) in the fast profile (``starter.backbones.load_resnet18_weights``)."""
    from starter.backbones import load_resnet18_weights

    return load_resnet18_weights(pretrained=profile != "fast")


def print_parameter_counts(
    encoder_decoder_cls: Callable[[int], nn.Module],
    unet_cls: Callable[[int], nn.Module],
    resnet_unet_cls: Callable[[int], nn.Module],
    *,
    n_class: int,
) -> None:
    """Print the trainable parameters (millions) of each model, freshly built for `n_class` classes, then the
    ResNet-UNet's split into its ResNet-18 encoder, the student's decoder and the encoder's unused fc layer
    (``encoder.fc``). Skipped, with skip_if_undone's line, while a class it builds is a stub."""
    with skip_if_undone("the parameter counts"):
        resnet_unet = resnet_unet_cls(n_class)
        counts = {"encoder-decoder (no skips)": encoder_decoder_cls(n_class), "U-Net": unet_cls(n_class)}
        for name, model in {**counts, "ResNet-UNet": resnet_unet}.items():
            print(f"{name:>26}: {count_parameters(model) / 1e6:5.2f} M parameters")
        fc = count_parameters(resnet_unet.encoder.fc)  # kept in the encoder but never used
        encoder = count_parameters(resnet_unet.encoder) - fc
        decoder = count_parameters(resnet_unet) - encoder - fc
        print(
            f"ResNet-UNet: {encoder / 1e6:.2f} M in the ResNet-18 encoder, {decoder / 1e6:.2f} M in your decoder, "
            f"{fc / 1e6:.2f} M in the unused fc layer"
        )
