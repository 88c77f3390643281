"""fit(resume=True): a run cut off mid-epoch (a Colab disconnect) continues as if nothing happened.

A tiny CPU model on a tiny dataset whose items draw from Python's, NumPy's and torch's global random
generators, shuffled every epoch, so that identical histories and weights prove that the model,
optimizer, scheduler, early-stopping bookkeeping and every random generator were restored.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from starter.constants import IGNORE_INDEX
from starter.train import History, fit, state_path_for

N_CLASS = 2
EPOCHS = 4


class NoisyToy(Dataset):
    """Class 1 where the red channel is positive; every item draws from all three global generators."""

    def __init__(self, n: int = 16):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, 8, 8, generator=g)
        self.masks = (self.images[:, 0] > 0).long()
        self.masks[:, :1, :] = IGNORE_INDEX

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index] + 0.3 * torch.randn(3, 8, 8) + float(np.random.normal(0.0, 0.1))
        mask = self.masks[index]
        if random.random() < 0.5:  # joint horizontal flip, as an augmentation would
            image, mask = image.flip(-1), mask.flip(-1)
        return image, mask


class DiesDuring:
    """A train loader that raises KeyboardInterrupt at batch `at` of its `epoch`-th pass (a process killed mid-epoch)."""

    def __init__(self, loader: DataLoader, epoch: int, at: int = 1):
        self.loader, self.epoch, self.at, self.passes = loader, epoch, at, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.passes += 1
        for index, batch in enumerate(self.loader):
            if self.passes == self.epoch and index == self.at:
                raise KeyboardInterrupt("simulated disconnect")
            yield batch


class NeverIterated:
    """A loader that fails the test when fit tries to train on it."""

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        raise AssertionError("fit trained although the run had finished")


def ref_confusion(pred, target, n_class, ignore_index=IGNORE_INDEX):
    keep = target != ignore_index
    return torch.bincount(target[keep] * n_class + pred[keep], minlength=n_class * n_class).reshape(n_class, n_class)


def coarse_miou(conf):
    """mIoU rounded to 0.1, so that ties (no improvement) happen and the plateau scheduler acts."""
    conf = conf.double()
    inter = conf.diagonal()
    return round((inter / (conf.sum(0) + conf.sum(1) - inter)).nanmean().item(), 1)


def constant_miou(conf):
    return 0.5


def make_model(offset: float = 0.0) -> nn.Module:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, N_CLASS, 1))
    with torch.no_grad():  # fixed init independent of the global generator; offset = another "fresh" model
        for i, p in enumerate(model.parameters()):
            p.copy_(torch.linspace(-0.3, 0.3, p.numel()).reshape(p.shape).roll(i) + offset)
    return model


def loaders():
    ds = NoisyToy()
    return DataLoader(ds, batch_size=4, shuffle=True), DataLoader(ds, batch_size=8)


def scramble_rng():
    """A new process starts with other generator states; resuming must not depend on them."""
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)


def run(model, train, val, *, scheduler, **kw):
    """fit with the scheduler built on this call's own optimizer (a new process builds new ones)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=5e-4)
    if scheduler == "plateau":
        # patience 0, so the rounded mIoU's ties lower the lr within four epochs.
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=0)
    kw.setdefault("early_stopping_patience", 10)
    return fit(
        model,
        train,
        val,
        n_class=N_CLASS,
        epochs=EPOCHS,
        optimizer=optimizer,
        scheduler=scheduler,
        confusion_fn=ref_confusion,
        miou_fn=coarse_miou,
        device="cpu",
        progress=False,
        **kw,
    )


COMPARED = ("train_loss", "val_loss", "val_miou", "val_pixel_acc", "lr", "best_epoch", "best_miou", "stopped_early")


def assert_same_run(resumed: History, reference: History) -> None:
    for key in COMPARED:
        assert getattr(resumed, key) == getattr(reference, key), key


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("scheduler", ["poly", "plateau"])
def test_run_cut_off_in_epoch_3_resumes_identically(tmp_path, scheduler, capsys):
    """Does a run killed during epoch 3, resumed with fresh objects, match an uninterrupted run exactly?"""
    reference_model = make_model()
    reference = run(reference_model, *loaders(), scheduler=scheduler, checkpoint_path=tmp_path / "ref" / "ckpt.pt")
    if scheduler == "plateau":
        assert len(set(reference.lr)) > 1, "the plateau scheduler never acted: the test would prove nothing"
    assert reference.train_loss[-1] < reference.train_loss[0]

    ckpt = tmp_path / "cut" / "ckpt.pt"
    train, val = loaders()
    with pytest.raises(KeyboardInterrupt):
        run(make_model(), DiesDuring(train, epoch=3), val, scheduler=scheduler, checkpoint_path=ckpt, resume=True)
    state = torch.load(state_path_for(ckpt), weights_only=True)  # loads without unpickling arbitrary objects
    assert state["epoch"] == 2 and not state["finished"] and len(state["history"]["train_loss"]) == 2

    scramble_rng()
    resumed_model = make_model(offset=0.7)  # a new process builds a new, differently initialised model
    capsys.readouterr()
    resumed = run(resumed_model, *loaders(), scheduler=scheduler, checkpoint_path=ckpt, resume=True, verbose=True)
    output = capsys.readouterr().out
    assert "resuming from epoch 2" in output and "epoch   3/4" in output and "epoch   2/4" not in output
    assert_same_run(resumed, reference)
    assert_same_weights(resumed_model, reference_model)
    assert torch.load(state_path_for(ckpt), weights_only=True)["finished"]


def test_early_stopping_bookkeeping_survives(tmp_path):
    """Does a run that would stop early at epoch 3 still stop there after being cut off during epoch 3?"""
    kw = dict(scheduler=None, early_stopping_patience=2)
    reference_model = make_model()
    reference = fit_constant(reference_model, *loaders(), checkpoint_path=tmp_path / "ref" / "ckpt.pt", **kw)
    assert reference.stopped_early and len(reference.train_loss) == 3

    ckpt = tmp_path / "ckpt.pt"
    train, val = loaders()
    with pytest.raises(KeyboardInterrupt):
        fit_constant(make_model(), DiesDuring(train, epoch=3), val, checkpoint_path=ckpt, resume=True, **kw)
    scramble_rng()
    resumed_model = make_model(offset=0.7)
    resumed = fit_constant(resumed_model, *loaders(), checkpoint_path=ckpt, resume=True, **kw)
    assert_same_run(resumed, reference)
    assert_same_weights(resumed_model, reference_model)

    # Resuming an early-stopped run trains nothing and brings the best weights (epoch 1) back.
    again_model = make_model(offset=-0.4)
    again = fit_constant(again_model, NeverIterated(), val, checkpoint_path=ckpt, resume=True, **kw)
    assert_same_run(again, reference)
    assert_same_weights(again_model, reference_model)


def fit_constant(model, train, val, *, scheduler, **kw):
    """fit whose mIoU never improves after epoch 1 (early stopping fires after `patience` more)."""
    return fit(
        model,
        train,
        val,
        n_class=N_CLASS,
        epochs=6,
        lr=0.2,
        scheduler=scheduler,
        confusion_fn=ref_confusion,
        miou_fn=constant_miou,
        device="cpu",
        progress=False,
        verbose=False,
        **kw,
    )


def test_resuming_a_finished_run_returns_at_once(tmp_path, capsys):
    """Does resume=True on a finished run return its History without training, with the best weights loaded?"""
    ckpt = tmp_path / "ckpt.pt"
    model = make_model()
    first = run(model, *loaders(), scheduler="poly", checkpoint_path=ckpt, resume=True)
    best = torch.load(ckpt, weights_only=True)

    other = make_model(offset=0.5)
    capsys.readouterr()
    again = run(other, NeverIterated(), loaders()[1], scheduler="poly", checkpoint_path=ckpt, resume=True, verbose=True)
    assert "training had already finished" in capsys.readouterr().out
    assert_same_run(again, first)
    assert again.epoch_time == first.epoch_time and again.best_checkpoint == ckpt
    for name, value in other.state_dict().items():
        assert torch.equal(value, best[name]), name


def test_resume_without_state_starts_fresh_and_says_so(tmp_path, capsys):
    """Does resume=True with no state file train from scratch, say so, and leave a state behind?"""
    ckpt = tmp_path / "ckpt.pt"
    fresh = run(make_model(), *loaders(), scheduler="poly", checkpoint_path=ckpt, resume=True, verbose=True)
    assert "starting from scratch" in capsys.readouterr().out
    plain = run(make_model(), *loaders(), scheduler="poly")
    assert_same_run(fresh, plain)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "ckpt.state.pt"]  # no temporary files


def test_no_state_is_written_without_resume(tmp_path):
    """Does fit without resume or state_path keep only the checkpoint, as before?"""
    run(make_model(), *loaders(), scheduler=None, checkpoint_path=tmp_path / "ckpt.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_explicit_state_path_without_checkpoint(tmp_path):
    """Does state_path alone (no checkpoint) save and resume the last weights?"""
    state = tmp_path / "deep" / "run.state.pt"
    train, val = loaders()
    with pytest.raises(KeyboardInterrupt):
        run(make_model(), DiesDuring(train, epoch=2), val, scheduler="poly", state_path=state, resume=True)
    resumed_model = make_model(offset=0.3)
    resumed = run(resumed_model, *loaders(), scheduler="poly", state_path=state, resume=True)
    reference_model = make_model()
    reference = run(reference_model, *loaders(), scheduler="poly")
    assert_same_run(resumed, reference)
    assert_same_weights(resumed_model, reference_model)


def test_resume_argument_and_mismatch_errors(tmp_path):
    """Are a resume with nowhere to keep the state, another epoch count and another model refused clearly?"""
    with pytest.raises(ValueError, match="checkpoint_path or state_path"):
        run(make_model(), *loaders(), scheduler=None, resume=True)
    ckpt = tmp_path / "ckpt.pt"
    run(make_model(), *loaders(), scheduler=None, checkpoint_path=ckpt, resume=True)
    state = state_path_for(ckpt)
    with pytest.raises(ValueError, match=r"epochs=4.*not epochs=5") as caught:
        fit(make_model(), *loaders(), n_class=N_CLASS, epochs=5, checkpoint_path=ckpt, resume=True,
            confusion_fn=ref_confusion, miou_fn=coarse_miou, device="cpu", progress=False, verbose=False)  # fmt: skip
    assert str(state) in str(caught.value)
    wider = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, N_CLASS, 1))
    with pytest.raises(RuntimeError, match="does not fit this model") as caught:
        run(wider, *loaders(), scheduler=None, checkpoint_path=ckpt, resume=True)
    assert str(state) in str(caught.value)


def test_cut_off_state_write_keeps_the_last_good_state(tmp_path, monkeypatch):
    """Does a save that dies half-written (disconnect during torch.save) leave the previous epoch's state intact?"""
    real_save = torch.save

    def dies_while_saving_epoch_3(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 3:
            with open(f, "wb") as handle:
                handle.write(b"PK\x03\x04 half a file")
            raise KeyboardInterrupt("disconnect during the write")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dies_while_saving_epoch_3)
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        run(make_model(), *loaders(), scheduler="poly", checkpoint_path=ckpt, resume=True)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(state_path_for(ckpt), weights_only=True)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "ckpt.state.pt"]  # temporary file removed

    resumed_model = make_model(offset=0.2)
    resumed = run(resumed_model, *loaders(), scheduler="poly", checkpoint_path=ckpt, resume=True)
    reference_model = make_model()
    assert_same_run(resumed, run(reference_model, *loaders(), scheduler="poly"))
    assert_same_weights(resumed_model, reference_model)


KILLED_PROCESS = """
import os, sys
sys.path[:0] = [{root!r}, {tests!r}]
from test_resume import DiesDuring, loaders, make_model, run

class Killed(DiesDuring):
    def __iter__(self):
        try:
            yield from super().__iter__()
        except KeyboardInterrupt:
            os._exit(3)  # the process vanishes mid-epoch: no cleanup, no finally blocks

train, val = loaders()
run(make_model(), Killed(train, epoch=3), val, scheduler="poly", checkpoint_path={ckpt!r}, resume=True)
"""


def test_process_killed_mid_epoch_resumes_identically(tmp_path):
    """Does a state left by a process that died abruptly in epoch 3 resume here to the uninterrupted result?"""
    from pathlib import Path

    ckpt = tmp_path / "ckpt.pt"
    tests = Path(__file__).resolve().parent
    script = KILLED_PROCESS.format(root=str(tests.parent), tests=str(tests), ckpt=str(ckpt))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr[-2000:]
    assert torch.load(state_path_for(ckpt), weights_only=True)["epoch"] == 2

    resumed_model = make_model(offset=0.7)
    resumed = run(resumed_model, *loaders(), scheduler="poly", checkpoint_path=ckpt, resume=True)
    reference_model = make_model()
    assert_same_run(resumed, run(reference_model, *loaders(), scheduler="poly"))
    assert_same_weights(resumed_model, reference_model)


def test_history_round_trip():
    """Does History.from_dict invert as_dict, also through JSON where NaN became null?"""
    from pathlib import Path

    history = History(
        train_loss=[1.0, 0.5],
        val_loss=[0.9, 0.6],
        val_miou=[0.2, 0.4],
        val_pixel_acc=[0.7, 0.8],
        lr=[0.1, 0.01],
        epoch_time=[1.5, 1.4],
        best_epoch=2,
        best_miou=0.4,
        best_checkpoint=Path("runs/x/ckpt.pt"),
        stopped_early=True,
    )
    assert History.from_dict(history.as_dict()) == history
    through_json = History.from_dict(json.loads(json.dumps(history.as_dict())))
    assert through_json == history and isinstance(through_json.best_checkpoint, Path)
    empty = History.from_dict(json.loads(json.dumps(History().as_dict()).replace("NaN", "null")))
    assert math.isnan(empty.best_miou) and empty.best_checkpoint is None and empty.train_loss == []
    with pytest.raises(TypeError):
        History.from_dict({"no_such_field": 1})


def test_a_run_with_the_students_epoch_function_resumes_identically(tmp_path):
    """With unet_train_epoch as epoch_fn, does a run cut off in epoch 3 match an uninterrupted one exactly?"""
    from grader.assignments import load_assignment

    unit = next(u for u in load_assignment("unet").auto_units if u.grade_id == "unet_train_epoch")
    namespace: dict = {}
    exec(unit.source, namespace)
    kw = dict(scheduler="poly", epoch_fn=namespace["unet_train_epoch"])
    reference_model = make_model()
    reference = run(reference_model, *loaders(), checkpoint_path=tmp_path / "ref" / "ckpt.pt", **kw)
    assert reference.train_loss[-1] < reference.train_loss[0]
    ckpt = tmp_path / "cut" / "ckpt.pt"
    train, val = loaders()
    with pytest.raises(KeyboardInterrupt):
        run(make_model(), DiesDuring(train, epoch=3), val, checkpoint_path=ckpt, resume=True, **kw)
    scramble_rng()
    resumed_model = make_model(offset=0.7)
    resumed = run(resumed_model, *loaders(), checkpoint_path=ckpt, resume=True, **kw)
    assert_same_run(resumed, reference)
    assert_same_weights(resumed_model, reference_model)
