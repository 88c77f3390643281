"""Training and evaluation loops for the segmentation notebooks.

Modelled on torchvision's references/segmentation: small explicit functions
(`train_one_epoch`, `evaluate`) and a `fit` driver that adds validation, checkpoints,
early stopping and learning-rate schedules.

The metrics and the training loop's epoch are not implemented here as students write them: they
are graded exercises. `evaluate` and `fit` take the student's own functions as arguments::

    history = fit(model, train_loader, val_loader, n_class=12, epochs=30,
                  confusion_fn=confusion_matrix, miou_fn=mean_iou, epoch_fn=unet_train_epoch,
                  checkpoint_path="checkpoints/fcn32.pt", early_stopping_patience=5)

``epoch_fn`` (the U-Net notebook's ``unet_train_epoch``) trains one epoch; `fit` hands it a view of
the loader (at most ``max_steps_per_epoch`` batches, a progress bar, batches already on the device)
and a view of the model (mixed precision, torchvision's dict outputs unwrapped). Notebooks that come
before the students write their loop (FCN) leave it out and get the kit's own steps, built from
small helpers (`_forward_loss`, `_apply_gradients`, `_SampleMean`) with a contract of their own.

Batches are `(images, masks, ...)` tuples or dicts with "image" and "mask" keys:
images (B, 3, H, W) float, masks (B, H, W) int64 with IGNORE_INDEX for unlabelled pixels.
Models return logits (B, n_class, H, W), or a dict with an "out" entry like torchvision's.

Runs survive a Colab disconnect: ``fit(..., checkpoint_path=..., resume=True)`` saves the whole
training state after every epoch (``<checkpoint stem>.state.pt``) and, run again, continues after the
last finished epoch with the same results as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from starter.common import write_atomically
from starter.config import get_device, seed_everything
from starter.constants import IGNORE_INDEX, OVERFIT_LOSS_RATIO, OVERFIT_LR, OVERFIT_STEPS

__all__ = [
    "History",
    "OverfitError",
    "evaluate",
    "fit",
    "overfit_one_batch",
    "predict",
    "state_path_for",
    "train_one_epoch",
]

ConfusionFn = Callable[[torch.Tensor, torch.Tensor, int], Any]
MiouFn = Callable[[torch.Tensor], Any]


@dataclass
class History:
    """What `fit` measured, one list entry per finished epoch.

    `lr` is the learning rate of the first parameter group during that epoch; `epoch_time`
    is seconds for training plus validation. `best_epoch` is 1-based (None without
    validation), `best_checkpoint` the file holding the best weights (None if not saved).
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_miou: list[float] = field(default_factory=list)
    val_pixel_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_miou: float = float("nan")
    best_checkpoint: Path | None = None
    stopped_early: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable: the checkpoint path becomes a str)."""
        d = asdict(self)
        d["best_checkpoint"] = None if self.best_checkpoint is None else str(self.best_checkpoint)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """The inverse of ``as_dict``.

        Inputs:
            d: a dict from ``as_dict`` (possibly through JSON, where NaN was stored as null).
        Returns:
            History; unknown keys raise a TypeError, missing ones take their defaults.
        """
        values = dict(d)
        if values.get("best_checkpoint") is not None:
            values["best_checkpoint"] = Path(values["best_checkpoint"])
        if "best_miou" in values:
            values["best_miou"] = float("nan") if values["best_miou"] is None else float(values["best_miou"])
        for key in ("train_loss", "val_loss", "val_miou", "val_pixel_acc", "lr", "epoch_time"):
            if key in values:
                values[key] = list(values[key])
        return cls(**values)


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------


def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs: a batch from the loader. Returns: (images (B,3,H,W), masks (B,H,W))."""
    if isinstance(batch, dict):
        try:
            return batch["image"], batch["mask"]
        except KeyError as e:
            raise KeyError(f"dict batches need 'image' and 'mask' keys, got {sorted(batch)}") from e
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(
        f"expected each batch to be (images, masks, ...) or a dict with 'image' and 'mask', got {type(batch).__name__}"
    )


def _to_device(images: torch.Tensor, masks: torch.Tensor, device: torch.device, channels_last: bool):
    # non_blocking only helps with pinned memory, and is harmless otherwise.
    images = images.to(device, non_blocking=True)
    masks = masks.to(device, non_blocking=True).long()
    if channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, masks


def _logits(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Run the model; Returns: logits (B, n_class, H, W) matching the masks' size."""
    out = model(images)
    if isinstance(out, dict):  # torchvision segmentation models return {"out": ..., "aux": ...}
        out = out["out"]
    if out.dim() != 4 or out.shape[-2:] != masks.shape[-2:]:
        raise ValueError(
            f"model output has shape {tuple(out.shape)} but masks have shape {tuple(masks.shape)}: "
            "expected logits (B, n_class, H, W) with the masks' H and W - did the model upsample "
            "back to the input size?"
        )
    return out


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    # Mixed precision only on CUDA: CPU autocast is slow for convolutions and MPS support varies.
    if device.type == "cuda" and amp_dtype is not None:
        return torch.autocast(device_type="cuda", dtype=amp_dtype)
    return contextlib.nullcontext()


def _total_steps(loader: Iterable, max_steps: int | None) -> int | None:
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:  # iterable datasets have no length
        n = None
    if max_steps is None:
        return n
    return max_steps if n is None else min(n, max_steps)


def _progress_bar(loader: Iterable, max_steps: int | None, desc: str, progress: bool) -> tqdm:
    """A tqdm bar over ONE pass of `loader`.

    tqdm.auto's class calls iter() on a plain iterable in its constructor and again when iterated:
    a DataLoader would start its workers twice per epoch and draw an extra seed from torch's global
    generator. Handing tqdm an iterator makes both calls the same single pass.
    """
    total = _total_steps(loader, max_steps)
    return tqdm(iter(loader), total=total, desc=desc, leave=False, disable=not progress)


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Put the model in eval mode and give every submodule its own previous mode back.

    Restoring per module (not model.train(was_training)) keeps deliberately frozen parts,
    e.g. a backbone's BatchNorm layers held in eval mode, as the caller left them.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _as_confusion(value: Any, n_class: int) -> torch.Tensor:
    """Turn what confusion_fn returned (tensor, NumPy array, nested list) into an int64 tensor."""
    conf = torch.as_tensor(value)
    if conf.shape != (n_class, n_class):
        raise ValueError(f"confusion_fn returned shape {tuple(conf.shape)}, expected ({n_class}, {n_class})")
    return conf.to(torch.int64)


def _save_atomic(state: dict[str, Any], path: Path) -> None:
    """torch.save to a temporary file next to `path`, then rename over it.

    An interrupted save (Ctrl-C, full disk, Colab disconnect) then never leaves a truncated
    checkpoint where the last good one was.
    """
    write_atomically(path, lambda temporary: torch.save(state, temporary))


# --------------------------------------------------------------------------------------
# one epoch of training / one pass of evaluation
# --------------------------------------------------------------------------------------


EpochFn = Callable[[nn.Module, Iterable, torch.optim.Optimizer, Callable, torch.device], float]


def _forward_loss(model, images, masks, loss_fn, device, amp_dtype) -> torch.Tensor:
    """The loss of one batch, the forward pass autocast on CUDA when amp_dtype is set."""
    with _autocast(device, amp_dtype):
        return loss_fn(_logits(model, images, masks), masks)


def _apply_gradients(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler=None) -> None:
    """Clear stale gradients, back-propagate `loss` and step, through the GradScaler for float16."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


@dataclass
class _SampleMean:
    """A running mean over samples of per-batch means (a batch of b samples weighs b)."""

    total: float = 0.0
    count: int = 0

    def add(self, batch_mean: float, batch_size: int) -> float:
        self.total += batch_mean * batch_size
        self.count += batch_size
        return self.total / self.count


class _BatchesOnDevice:
    """A view of a loader for a student's epoch function: (images, masks) pairs already on `device`
    (dict batches unpacked), at most `max_steps` of them, behind a progress bar. Its len() is the
    number of batches it yields, when the loader has a length."""

    def __init__(self, loader, device, *, channels_last, max_steps, progress, desc):
        self.loader, self.device, self.channels_last = loader, device, channels_last
        self.max_steps, self.progress, self.desc = max_steps, progress, desc

    def __len__(self) -> int:
        total = _total_steps(self.loader, self.max_steps)
        if total is None:
            raise TypeError("this loader has no length")
        return total

    def __iter__(self):
        bar = _progress_bar(self.loader, self.max_steps, self.desc, self.progress)
        try:
            for step, batch in enumerate(bar):
                if self.max_steps is not None and step >= self.max_steps:
                    break
                yield _to_device(*_unpack(batch), self.device, self.channels_last)
        finally:
            bar.close()


class _ModelForEpoch(nn.Module):
    """A view of the model for a student's epoch function: the forward pass autocast on CUDA (when
    amp_dtype is set) and torchvision's {"out": ...} outputs unwrapped to the logits. train()/eval()
    and the parameters are the model's own."""

    def __init__(self, model: nn.Module, device: torch.device, amp_dtype: torch.dtype | None):
        super().__init__()
        self.model, self.device, self.amp_dtype = model, device, amp_dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with _autocast(self.device, self.amp_dtype):
            out = self.model(images)
        out = out["out"] if isinstance(out, dict) else out
        return out.float() if self.amp_dtype is not None and out.is_floating_point() else out


def _checked_mean(value: Any, what: str) -> float:
    """The mean loss an epoch function returned, as a float; a clear error when it is not a finite number."""
    try:
        mean = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} returned {type(value).__name__}; it must return the mean loss as a float") from None
    if not math.isfinite(mean):
        raise FloatingPointError(
            f"{what} returned a mean loss of {mean}: lower the learning rate, and check that masks only hold "
            "class ids 0..n_class-1 or the ignore index"
        )
    return mean


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    *,
    epoch_fn: EpochFn | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    desc: str = "train",
) -> float:
    """One epoch as `fit` runs it: `epoch_fn` when given (your loop), else the kit's own steps.

    Inputs:
        model: returns logits (B, n_class, H, W) (or a dict with "out"); already on `device`.
        loader: yields (images (B,3,H,W) float, masks (B,H,W) int64, ...) or dicts with "image"/"mask".
        loss_fn: loss_fn(logits, masks) -> scalar tensor.
        optimizer: steps the model's parameters.
        device: where batches are moved.
        epoch_fn: your epoch function, ``epoch_fn(model, batches, optimizer, loss_fn, device) -> mean loss
            per sample`` (the U-Net notebook's ``unet_train_epoch``). It gets views: batches are
            (images, masks) already on `device`, at most `max_steps` of them; the model autocasts on
            CUDA when `amp_dtype` is set (float16 needs a GradScaler inside the loop: with `epoch_fn`
            and a scaler, the epoch runs in float32) and returns plain logits.
        scaler: GradScaler for float16 autocast on CUDA (None for bfloat16 or float32).
        amp_dtype: torch.bfloat16 or torch.float16 to autocast on CUDA; None for float32.
            Defaults to float16 when an enabled scaler is given. Ignored off CUDA.
        channels_last: feed images in channels-last memory format (faster convs on tensor cores).
        max_steps: stop after this many batches (fast mode, debugging).
        progress: show a tqdm bar.
    Returns:
        float: mean training loss per image over the batches seen.
    Raises:
        FloatingPointError: the loss is not finite; ValueError: no batch.
    """
    device = torch.device(device)
    if amp_dtype is None and scaler is not None and scaler.is_enabled():
        amp_dtype = torch.float16
    if epoch_fn is not None:
        batches = _BatchesOnDevice(
            loader, device, channels_last=channels_last, max_steps=max_steps, progress=progress, desc=desc
        )
        view = _ModelForEpoch(model, device, amp_dtype if scaler is None else None)
        return _checked_mean(epoch_fn(view, batches, optimizer, loss_fn, device), "your epoch function")
    model.train()
    seen = _SampleMean()
    bar = _progress_bar(loader, max_steps, desc, progress)
    for step, batch in enumerate(bar):
        if max_steps is not None and step >= max_steps:
            break
        images, masks = _to_device(*_unpack(batch), device, channels_last)
        loss = _forward_loss(model, images, masks, loss_fn, device, amp_dtype)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {step}: lower the learning rate, and check "
                "that masks only hold class ids 0..n_class-1 or the ignore index"
            )
        _apply_gradients(loss, optimizer, scaler)
        bar.set_postfix(loss=f"{seen.add(loss.item(), images.shape[0]):.4f}")
    bar.close()
    if seen.count == 0:
        raise ValueError("the training loader yielded no batches (empty dataset, or max_steps=0?)")
    return seen.total / seen.count


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    *,
    n_class: int,
    confusion_fn: ConfusionFn,
    miou_fn: MiouFn,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> dict[str, Any]:
    """Evaluate on a whole loader, accumulating one confusion matrix over the dataset.

    The per-batch confusion matrices are SUMMED and mIoU is computed once from the total:
    averaging per-batch mIoUs would weight small batches and rare classes wrongly.

    Inputs:
        model, loader, device: as in train_one_epoch.
        n_class: number of classes.
        confusion_fn: confusion_fn(pred (B,H,W) int64, target (B,H,W) int64, n_class) ->
            (n_class, n_class) counts, rows = ground truth; tensors are on `device`.
            Its own default ignore index applies (use functools.partial to change it).
        miou_fn: miou_fn(conf (n_class, n_class) int64 CPU tensor) -> float.
        loss_fn: optional; loss_fn(logits, masks) -> scalar, averaged per image.
        amp_dtype: autocast dtype on CUDA (None: float32).
        max_steps: evaluate on the first max_steps batches only.
    Returns:
        dict: "loss" (float or None), "miou" (float), "pixel_acc" (float; NaN if no labelled
        pixel), "confusion" ((n_class, n_class) int64 CPU tensor summed over all batches).
    The model is in eval mode during the pass; each submodule's previous mode is restored.
    """
    device = torch.device(device)
    conf = torch.zeros((n_class, n_class), dtype=torch.int64, device=device)
    total_loss, n_images = 0.0, 0
    with _eval_mode(model):
        bar = _progress_bar(loader, max_steps, desc, progress)
        for step, batch in enumerate(bar):
            if max_steps is not None and step >= max_steps:
                break
            images, masks = _to_device(*_unpack(batch), device, channels_last)
            with _autocast(device, amp_dtype):
                logits = _logits(model, images, masks)
                if loss_fn is not None:
                    total_loss += loss_fn(logits, masks).item() * images.shape[0]
            n_images += images.shape[0]
            pred = logits.argmax(dim=1)
            conf += _as_confusion(confusion_fn(pred, masks, n_class), n_class).to(device)
        bar.close()
    if n_images == 0:
        raise ValueError("the evaluation loader yielded no batches (empty dataset, or max_steps=0?)")
    conf = conf.cpu()
    labelled = conf.sum().item()
    # Pixel accuracy = correctly classified labelled pixels / labelled pixels.
    pixel_acc = conf.diagonal().sum().item() / labelled if labelled else float("nan")
    return {
        "loss": total_loss / n_images if loss_fn is not None else None,
        "miou": float(miou_fn(conf)),
        "pixel_acc": pixel_acc,
        "confusion": conf,
    }


# --------------------------------------------------------------------------------------
# the training state that lets fit resume after a disconnect
# --------------------------------------------------------------------------------------

STATE_FORMAT = 1  # bump when the layout of the state file changes


def state_path_for(checkpoint_path: str | os.PathLike) -> Path:
    """The training-state file fit(resume=True) keeps next to a checkpoint.

    Inputs:
        checkpoint_path: e.g. "runs/fcn/fcn32s/checkpoint.pt".
    Returns:
        Path "<checkpoint stem>.state.pt" in the same folder, e.g. ".../checkpoint.state.pt".
    """
    checkpoint = Path(checkpoint_path)
    return checkpoint.with_name(f"{checkpoint.stem}.state.pt")


def _resolve_state_path(
    resume: bool, state_path: str | os.PathLike | None, checkpoint_path: str | os.PathLike | None
) -> Path | None:
    """Where fit keeps its training state: the explicit path, else next to the checkpoint when resuming.

    Returns:
        Path, or None when no state is kept (resume=False and no state_path: fit behaves as before).
    """
    if state_path is not None:
        return Path(state_path)
    if not resume:
        return None
    if checkpoint_path is None:
        raise ValueError("resume=True needs a place for the training state: pass checkpoint_path or state_path")
    return state_path_for(checkpoint_path)


def _rng_state() -> dict[str, Any]:
    """Every global random generator's state as tensors and plain values (loadable with weights_only=True)."""
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        # Python's Mersenne Twister words are < 2**32, so int64 holds them exactly.
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    """Restore what _rng_state saved. CUDA states are restored for the devices present here."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


@dataclass
class _Progress:
    """fit's bookkeeping between epochs, saved in the state file."""

    history: History
    best: float = -math.inf
    epochs_without_improvement: int = 0
    last_epoch: int = 0
    finished: bool = False


def _training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    sched: Any,
    scaler: torch.amp.GradScaler | None,
    progress: _Progress,
    epochs: int,
) -> dict[str, Any]:
    """Everything needed to continue after `progress.last_epoch`, as tensors and plain data."""
    return {
        "format": STATE_FORMAT,
        "epochs": epochs,
        "epoch": progress.last_epoch,
        "finished": progress.finished,
        "best": progress.best,
        "epochs_without_improvement": progress.epochs_without_improvement,
        "history": progress.history.as_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if sched is None else sched.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "rng": _rng_state(),
    }


def _load_training_state(path: Path) -> dict[str, Any]:
    """Read a state file written by fit; a clear error when it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a foreign or damaged file: say which one and what to do
        raise RuntimeError(
            f"cannot read the training state {path} ({type(error).__name__}: {error}); delete it to start over"
        ) from error
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a training state written by this version of fit; delete it to start over")
    return state


def _restore_training_state(
    state: dict[str, Any],
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    sched: Any,
    scaler: torch.amp.GradScaler | None,
    epochs: int,
) -> _Progress:
    """Load a saved state into the model, optimizer, scheduler, scaler and random generators.

    Returns:
        the bookkeeping to continue from.
    Raises:
        ValueError / RuntimeError naming `path` when the state belongs to another run.
    """
    if state["epochs"] != epochs:
        raise ValueError(
            f"{path} was saved by fit(epochs={state['epochs']}), not epochs={epochs}: resume with the same "
            "epochs, or delete the file to start over"
        )
    if (state["scheduler"] is None) != (sched is None):
        raise ValueError(
            f"{path} was saved {'without' if sched is not None else 'with'} a scheduler; this call differs"
        )
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise RuntimeError(
            f"the training state {path} does not fit this model/optimizer (delete it to start over): {error}"
        ) from error
    if sched is not None:
        sched.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    return _Progress(
        history=History.from_dict(state["history"]),
        best=float(state["best"]),
        epochs_without_improvement=int(state["epochs_without_improvement"]),
        last_epoch=int(state["epoch"]),
        finished=bool(state["finished"]),
    )


# --------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------


def _make_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer, epochs: int):
    """Returns: a torch LR scheduler stepped once per epoch, or None."""
    if scheduler is None or not isinstance(scheduler, str):
        return scheduler
    name = scheduler.lower()
    if name == "plateau":
        # Divide the lr by 10 once val mIoU (mode max) has not improved for 3 epochs.
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=2)
    if name == "poly":
        # DeepLab's "poly" policy, per epoch: lr * (1 - epoch / epochs) ** 0.9.
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: (1 - e / epochs) ** 0.9)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    raise ValueError(f"unknown scheduler {scheduler!r}: use 'plateau', 'poly', 'cosine', a torch scheduler or None")


def _amp_setup(amp: bool, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    if not (amp and device.type == "cuda"):
        return None, None
    # bfloat16 has float32's range, so it needs no loss scaling; float16 (pre-Ampere GPUs) does.
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def _resume_or_start(
    state_file: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    sched: Any,
    scaler: torch.amp.GradScaler | None,
    epochs: int,
    verbose: bool,
) -> _Progress:
    """fit(resume=True): restore the saved state when there is one, else a fresh start (said aloud)."""
    if not state_file.is_file():
        if verbose:
            tqdm.write(f"no training state at {state_file}: starting from scratch")
        return _Progress(History())
    run = _restore_training_state(
        _load_training_state(state_file),
        state_file,
        model=model,
        optimizer=optimizer,
        sched=sched,
        scaler=scaler,
        epochs=epochs,
    )
    if verbose:
        if run.finished:
            tqdm.write(f"resuming from epoch {run.last_epoch}: training had already finished ({state_file})")
        else:
            tqdm.write(
                f"resuming from epoch {run.last_epoch} ({state_file}); continuing with epoch {run.last_epoch + 1}"
            )
    return run


def _validation_wanted(
    val_loader: Iterable | None,
    confusion_fn: ConfusionFn | None,
    miou_fn: MiouFn | None,
    early_stopping_patience: int | None,
    scheduler: Any,
) -> bool:
    """Whether fit validates after each epoch; a clear error when an option needs validation it will not get."""
    if (confusion_fn is None) != (miou_fn is None):
        raise ValueError("pass both confusion_fn and miou_fn (your metric functions), or neither")
    validate = val_loader is not None and confusion_fn is not None
    if val_loader is not None and not validate:
        warnings.warn(
            "val_loader given without confusion_fn/miou_fn: skipping validation "
            "(pass your confusion_matrix and mean_iou functions to validate)",
            stacklevel=3,  # the notebook's fit(...) line, not fit itself
        )
    if not validate:
        if early_stopping_patience is not None:
            raise ValueError("early_stopping_patience needs validation: pass val_loader, confusion_fn and miou_fn")
        is_plateau = isinstance(scheduler, str) and scheduler.lower() == "plateau"
        if is_plateau or isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise ValueError("a plateau scheduler needs validation: pass val_loader, confusion_fn and miou_fn")
    return validate


def _place_model(model: nn.Module, device: torch.device, channels_last: bool) -> None:
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)


def _default_loss(loss_fn: Callable | None, ignore_index: int, device: torch.device) -> Callable:
    """Returns: `loss_fn`, or cross-entropy ignoring `ignore_index`; an nn.Module loss moved to `device`."""
    if loss_fn is None:
        loss_fn = nn.CrossEntropyLoss(ignore_index=ignore_index)
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(device)  # class weights must live on the same device as the logits
    return loss_fn


def _default_optimizer(
    optimizer: torch.optim.Optimizer | None, model: nn.Module, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Returns: `optimizer`, or SGD over the model's trainable parameters."""
    if optimizer is not None:
        return optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@dataclass(frozen=True)
class _FitLoop:
    """What every epoch of one fit call uses, settled before the first epoch."""

    model: nn.Module
    train_loader: Iterable
    val_loader: Iterable | None
    validate: bool
    n_class: int
    epochs: int
    confusion_fn: ConfusionFn | None
    miou_fn: MiouFn | None
    loss_fn: Callable
    epoch_fn: EpochFn | None
    optimizer: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None
    device: torch.device
    channels_last: bool
    max_steps: int | None
    checkpoint: Path | None
    state_file: Path | None
    patience: int | None
    progress: bool
    verbose: bool


def _train_epoch(loop: _FitLoop, epoch: int) -> float:
    return train_one_epoch(
        loop.model,
        loop.train_loader,
        loop.loss_fn,
        loop.optimizer,
        loop.device,
        epoch_fn=loop.epoch_fn,
        scaler=loop.scaler,
        amp_dtype=loop.amp_dtype,
        channels_last=loop.channels_last,
        max_steps=loop.max_steps,
        progress=loop.progress,
        desc=f"epoch {epoch}/{loop.epochs}",
    )


def _validate(loop: _FitLoop) -> dict[str, Any]:
    return evaluate(
        loop.model,
        loop.val_loader,
        loop.device,
        n_class=loop.n_class,
        confusion_fn=loop.confusion_fn,
        miou_fn=loop.miou_fn,
        loss_fn=loop.loss_fn,
        amp_dtype=loop.amp_dtype,
        channels_last=loop.channels_last,
        max_steps=loop.max_steps,
        progress=loop.progress,
        desc="val",
    )


def _save_checkpoint(loop: _FitLoop, history: History) -> None:
    if loop.checkpoint is not None:
        _save_atomic(loop.model.state_dict(), loop.checkpoint)
        history.best_checkpoint = loop.checkpoint


def _record_validation(loop: _FitLoop, run: _Progress, epoch: int, result: dict[str, Any]) -> bool:
    """Add one validation to the History and keep the best weights. Returns: whether val mIoU improved."""
    history, miou = run.history, result["miou"]
    history.val_loss.append(result["loss"])
    history.val_miou.append(miou)
    history.val_pixel_acc.append(result["pixel_acc"])
    # NaN compares False, so a NaN mIoU never counts as an improvement.
    if not miou > run.best:
        run.epochs_without_improvement += 1
        return False
    run.best = miou
    history.best_epoch, history.best_miou = epoch, miou
    run.epochs_without_improvement = 0
    _save_checkpoint(loop, history)
    return True


def _step_scheduler(sched: Any, history: History) -> None:
    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
        sched.step(history.val_miou[-1])
    elif sched is not None:
        sched.step()


def _end_epoch(loop: _FitLoop, run: _Progress, epoch: int) -> None:
    """Decide on early stopping and save the training state; the state on disk is always a whole epoch."""
    stop = loop.patience is not None and run.epochs_without_improvement >= loop.patience
    run.history.stopped_early = stop
    run.last_epoch, run.finished = epoch, stop or epoch == loop.epochs
    if loop.state_file is not None:
        # Saved last, after every other file of this epoch.
        _save_atomic(
            _training_state(loop.model, loop.optimizer, loop.sched, loop.scaler, run, loop.epochs), loop.state_file
        )
    if stop and loop.verbose:
        tqdm.write(
            f"early stopping: no better val mIoU for {loop.patience} epoch(s) "
            f"(best {run.history.best_miou:.4f} at epoch {run.history.best_epoch})"
        )


def _run_epoch(loop: _FitLoop, run: _Progress, epoch: int) -> None:
    """Train one epoch, validate, keep the best weights, step the scheduler, then `_end_epoch`."""
    start = time.perf_counter()
    history = run.history
    history.lr.append(loop.optimizer.param_groups[0]["lr"])
    train_loss = _train_epoch(loop, epoch)
    history.train_loss.append(train_loss)
    line = f"epoch {epoch:>3}/{loop.epochs}  train loss {train_loss:.4f}"
    improved = False
    if loop.validate:
        result = _validate(loop)
        improved = _record_validation(loop, run, epoch, result)
        line += f"  val loss {result['loss']:.4f}  mIoU {result['miou']:.4f}  pixel acc {result['pixel_acc']:.4f}"
    else:  # without validation the latest weights are the ones kept
        _save_checkpoint(loop, history)
    _step_scheduler(loop.sched, history)
    history.epoch_time.append(time.perf_counter() - start)
    if loop.verbose:
        line += f"  lr {history.lr[-1]:.2e}  {history.epoch_time[-1]:.1f}s" + ("  *best*" if improved else "")
        tqdm.write(line)
    _end_epoch(loop, run, epoch)


def _restore_best(loop: _FitLoop, history: History) -> None:
    """Load the best validated weights back into the model, when a checkpoint holds them."""
    if not (loop.validate and history.best_checkpoint is not None):
        return
    loop.model.load_state_dict(torch.load(history.best_checkpoint, map_location=loop.device, weights_only=True))
    if loop.verbose:
        tqdm.write(
            f"restored the best weights (epoch {history.best_epoch}, val mIoU {history.best_miou:.4f}) "
            f"from {history.best_checkpoint}"
        )


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    n_class: int,
    epochs: int,
    confusion_fn: ConfusionFn | None = None,
    miou_fn: MiouFn | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    epoch_fn: EpochFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    scheduler: Any = None,
    device: torch.device | str | None = None,
    amp: bool = True,
    channels_last: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    early_stopping_patience: int | None = None,
    ignore_index: int = IGNORE_INDEX,
    max_steps_per_epoch: int | None = None,
    seed: int | None = 0,
    progress: bool = True,
    verbose: bool = True,
    resume: bool = False,
    state_path: str | os.PathLike | None = None,
) -> History:
    """Train `model` for `epochs` epochs, validating after each one.

    Inputs:
        model: returns logits (B, n_class, H, W); moved to `device` here.
        train_loader / val_loader: yield (images (B,3,H,W), masks (B,H,W) int64, ...).
        n_class: number of classes.
        epochs: maximum number of epochs.
        confusion_fn, miou_fn: your metric functions (see `evaluate`). Validation runs only
            when val_loader, confusion_fn and miou_fn are all given.
        loss_fn: default nn.CrossEntropyLoss(ignore_index=ignore_index).
        epoch_fn: your epoch function, epoch_fn(model, batches, optimizer, loss_fn, device) -> mean
            loss per sample (the U-Net notebook's unet_train_epoch): it trains every epoch (see
            `train_one_epoch` for the views it gets). None: the kit's own steps.
        optimizer: default SGD(lr, momentum, weight_decay) over trainable parameters;
            lr/momentum/weight_decay are ignored when you pass your own.
        scheduler: "plateau" (ReduceLROnPlateau on val mIoU, factor 0.1, patience 2),
            "poly" (DeepLab poly, per epoch), "cosine", any torch LR scheduler (stepped once
            per epoch; ReduceLROnPlateau instances get the val mIoU), or None.
        device: default get_device().
        amp: mixed precision on CUDA (bfloat16 where supported, else float16 + GradScaler).
        channels_last: use channels-last memory format for model and images.
        checkpoint_path: where to save the best weights (state_dict, by val mIoU). Without
            validation, the latest weights are saved there after every epoch instead.
        early_stopping_patience: stop after this many epochs without a better val mIoU.
        max_steps_per_epoch: cap on batches per epoch, for training and validation.
        seed: passed to seed_everything (None: leave the random generators alone).
        progress: tqdm bars; verbose: one summary line per epoch.
        resume: continue a run that stopped (e.g. a Colab disconnect) from its training state;
            without a state file it starts from scratch. A run that had already finished
            returns its History at once. Needs checkpoint_path or state_path.
        state_path: where the training state (model, optimizer, scheduler, GradScaler, epoch,
            History, early-stopping bookkeeping, random generators) is saved atomically after
            every epoch. Default with resume=True: "<checkpoint stem>.state.pt" next to
            checkpoint_path (see state_path_for). No state is saved when both resume is False
            and state_path is None.
    Returns:
        History. When a best checkpoint was saved, its weights are loaded back into `model`.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    state_file = _resolve_state_path(resume, state_path, checkpoint_path)
    validate = _validation_wanted(val_loader, confusion_fn, miou_fn, early_stopping_patience, scheduler)
    if seed is not None:
        # Keep whatever determinism the notebook asked for with seed_everything(..., deterministic=True).
        seed_everything(seed, deterministic=torch.are_deterministic_algorithms_enabled())
    device = get_device() if device is None else torch.device(device)
    _place_model(model, device, channels_last)
    loss_fn = _default_loss(loss_fn, ignore_index, device)
    optimizer = _default_optimizer(optimizer, model, lr, momentum, weight_decay)
    sched = _make_scheduler(scheduler, optimizer, epochs)
    amp_dtype, scaler = _amp_setup(amp, device)
    loop = _FitLoop(
        model=model,
        train_loader=train_loader,
        val_loader=val_loader,
        validate=validate,
        n_class=n_class,
        epochs=epochs,
        confusion_fn=confusion_fn,
        miou_fn=miou_fn,
        loss_fn=loss_fn,
        epoch_fn=epoch_fn,
        optimizer=optimizer,
        sched=sched,
        scaler=scaler,
        amp_dtype=amp_dtype,
        device=device,
        channels_last=channels_last,
        max_steps=max_steps_per_epoch,
        checkpoint=None if checkpoint_path is None else Path(checkpoint_path),
        state_file=state_file,
        patience=early_stopping_patience,
        progress=progress,
        verbose=verbose,
    )
    run = _Progress(History())
    if resume:
        run = _resume_or_start(
            state_file, model=model, optimizer=optimizer, sched=sched, scaler=scaler, epochs=epochs, verbose=verbose
        )
    for epoch in range(run.last_epoch + 1, epochs + 1):
        if run.finished:  # early stopping, or a resumed run that had already finished
            break
        _run_epoch(loop, run, epoch)
    _restore_best(loop, run.history)
    return run.history


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    *,
    max_batches: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collect images, ground truth and predictions for plotting.

    Inputs:
        model: returns logits (B, n_class, H, W); loader: as in evaluate;
        max_batches: stop after this many batches (None: the whole loader).
    Returns:
        images (N,3,H,W) as the loader gave them, masks (N,H,W) int64, preds (N,H,W) int64,
        all CPU tensors. Every batch must have the same H and W.
    The model's train/eval modes are restored afterwards.
    """
    device = torch.device(device)
    images_out, masks_out, preds_out = [], [], []
    with _eval_mode(model):
        for step, batch in enumerate(loader):
            if max_batches is not None and step >= max_batches:
                break
            images, masks = _unpack(batch)
            x, y = _to_device(images, masks, device, channels_last=False)
            preds_out.append(_logits(model, x, y).argmax(dim=1).cpu())
            images_out.append(images.cpu())
            masks_out.append(masks.cpu().long())
    if not preds_out:
        raise ValueError("the loader yielded no batches")
    return torch.cat(images_out), torch.cat(masks_out), torch.cat(preds_out)


# --------------------------------------------------------------------------------------
# sanity check: can the model overfit one batch?
# --------------------------------------------------------------------------------------

OVERFIT_HINTS = (
    "the learning rate: too high makes the loss jump or turn NaN, too low barely moves it "
    "(try lr=1e-3 or 1e-4 with Adam)",
    "the output is not upsampled back to the masks' H x W",
    "the masks hold values outside 0..n_class-1 other than the ignore index",
    "parameters are frozen (requires_grad=False), so nothing learns",
    "in a training loop of your own: optimizer.zero_grad() is missing, so gradients pile up",
    "a ReLU or other activation after the last classifier layer (logits must be free to go negative)",
    "the output is detached (.detach(), .data, .numpy() or torch.no_grad() in forward), "
    "so no gradient reaches the weights",
)


class OverfitError(RuntimeError):
    """overfit_one_batch could not drive one batch's loss down; the message lists the usual causes."""


def _overfit_error(reason: str) -> OverfitError:
    hints = "\n".join(f"  - {hint}" for hint in OVERFIT_HINTS)
    return OverfitError(f"{reason}\nA model that cannot overfit one batch has a bug. The usual causes:\n{hints}")


def _check_mask_values(masks: torch.Tensor, n_class: int, ignore_index: int) -> None:
    """Raise OverfitError when the masks hold labels the loss cannot use."""
    bad = (masks != ignore_index) & ((masks < 0) | (masks >= n_class))
    if bad.any():
        values = sorted({int(v) for v in masks[bad].unique()[:10]})
        raise _overfit_error(
            f"the masks hold {values} but the model predicts {n_class} classes (0..{n_class - 1}, "
            f"ignore {ignore_index})"
        )


def _output_classes(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> int:
    """The number of classes the model predicts, from one forward pass in eval mode without gradients
    (no batch statistic or random draw spent); a wrong output size raises OverfitError with the checklist."""
    try:
        with torch.no_grad(), _eval_mode(model):
            return _logits(model, images, masks).shape[1]
    except ValueError as error:  # keep the precise message, add the checklist
        raise _overfit_error(str(error)) from error


def _kit_overfit_step(model, images, masks, loss_fn, optimizer, device) -> float:
    """One Adam step of the kit's own on the batch. Returns: the loss before the update."""
    loss = _forward_loss(model, images, masks, loss_fn, device, None)
    if loss.requires_grad and torch.isfinite(loss):  # a detached output has no graph: the target check reports it
        _apply_gradients(loss, optimizer)
    return loss.item()


def _epoch_fn_step(epoch_fn: EpochFn) -> Callable[..., float]:
    """One step = one epoch of the student's function over the single batch. Returns: its mean loss."""

    def step_once(model, images, masks, loss_fn, optimizer, device) -> float:
        try:
            value = epoch_fn(_ModelForEpoch(model, device, None), [(images, masks)], optimizer, loss_fn, device)
        except RuntimeError as error:  # e.g. backward() through a detached output
            raise _overfit_error(f"your epoch function failed: {error}") from error
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _overfit_error(f"your epoch function returned {type(value).__name__}, not the mean loss") from None

    return step_once


def overfit_one_batch(
    model: nn.Module,
    batch: Any,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    epoch_fn: EpochFn | None = None,
    steps: int = OVERFIT_STEPS,
    lr: float = OVERFIT_LR,
    device: torch.device | str | None = None,
    target_loss: float | None = None,
    ignore_index: int = IGNORE_INDEX,
    progress: bool = True,
) -> list[float]:
    """Train a copy of `model` on one batch: a correct model drives the loss close to zero.

    The model itself is untouched (a deep copy trains, in train mode, with Adam).

    Inputs:
        model: returns logits (B, n_class, H, W) (or a dict with "out").
        batch: (images (B,3,H,W), masks (B,H,W), ...) or a dict with "image" and "mask".
        loss_fn: loss_fn(logits, masks) -> scalar; default CrossEntropyLoss(ignore_index).
        epoch_fn: your epoch function (``unet_train_epoch``): every step is one epoch of it over the
            one batch, so it checks your loop too. None: the kit's own step.
        steps: optimisation steps; lr: Adam's learning rate.
        device: default get_device().
        target_loss: pass when the final loss is below this; None (default): below
            OVERFIT_LOSS_RATIO (50 %) of the first step's loss, lenient enough for a correct
            model trained from scratch; pass e.g. 0.1 * first loss for a stricter check.
        ignore_index: label of unlabelled pixels.
        progress: tqdm bar.
    Returns:
        list of `steps` floats: the loss before each step's update.
    Raises:
        OverfitError (a RuntimeError): the loss did not get below the target, turned NaN, no
        parameter is trainable, or the masks hold impossible labels; the message lists the causes.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = get_device() if device is None else torch.device(device)
    trial = copy.deepcopy(model).to(device).train()
    params = [p for p in trial.parameters() if p.requires_grad]
    if not params:
        raise _overfit_error("the model has no trainable parameter (every requires_grad is False)")
    if loss_fn is None:
        loss_fn = nn.CrossEntropyLoss(ignore_index=ignore_index)
    if isinstance(loss_fn, nn.Module):
        loss_fn = copy.deepcopy(loss_fn).to(device)  # class weights on the logits' device, caller's copy untouched
    images, masks = _to_device(*_unpack(batch), device, channels_last=False)
    optimizer = torch.optim.Adam(params, lr=lr)
    step_once = _kit_overfit_step if epoch_fn is None else _epoch_fn_step(epoch_fn)
    losses: list[float] = []
    bar = tqdm(range(steps), desc="overfit one batch", leave=False, disable=not progress)
    _check_mask_values(masks, _output_classes(trial, images, masks), ignore_index)
    for step in bar:
        loss = step_once(trial, images, masks, loss_fn, optimizer, device)
        if not math.isfinite(loss):
            raise _overfit_error(f"the loss is {loss} at step {step}")
        losses.append(loss)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    target = OVERFIT_LOSS_RATIO * losses[0] if target_loss is None else target_loss
    if not losses[-1] < target:
        raise _overfit_error(
            f"after {steps} steps on one batch the loss is {losses[-1]:.4f} (first {losses[0]:.4f}), "
            f"not below {target:.4f}"
        )
    return losses
