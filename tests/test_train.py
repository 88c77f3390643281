"""Tests for starter.train: loops, validation, checkpoints, early stopping, schedulers."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from starter.constants import IGNORE_INDEX
from starter.train import History, evaluate, fit, predict, train_one_epoch

N_CLASS = 2


# Minimal reference metrics for the tests only (the starter package takes them as arguments).
def ref_confusion(pred, target, n_class, ignore_index=IGNORE_INDEX):
    keep = target != ignore_index
    idx = target[keep] * n_class + pred[keep]
    return torch.bincount(idx, minlength=n_class * n_class).reshape(n_class, n_class)


def ref_miou(conf):
    conf = conf.double()
    inter = conf.diagonal()
    union = conf.sum(0) + conf.sum(1) - inter
    return (inter / union).nanmean().item()


def constant_miou(value=0.5):
    return lambda conf: value


def toy_data(n=24, seed=0):
    """Learnable toy problem: class 1 where the red channel is positive, some pixels ignored."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 16, 16, generator=g)
    masks = (images[:, 0] > 0).long()
    masks[:, :2, :] = IGNORE_INDEX
    return TensorDataset(images, masks)


def tiny_model():
    model = nn.Conv2d(3, N_CLASS, kernel_size=1)
    with torch.no_grad():  # fixed init, independent of the global RNG
        model.weight.copy_(torch.linspace(-0.5, 0.5, model.weight.numel()).reshape(model.weight.shape))
        model.bias.zero_()
    return model


def loaders(batch_size=8, n=24):
    ds = toy_data(n)
    return DataLoader(ds, batch_size=batch_size, shuffle=True), DataLoader(ds, batch_size=batch_size)


def quiet(**kw):
    return dict(device="cpu", progress=False, verbose=False, **kw)


def test_loss_decreases_on_learnable_problem():
    train, val = loaders()
    model = tiny_model()
    h = fit(
        model, train, val, n_class=N_CLASS, epochs=6, lr=0.5, confusion_fn=ref_confusion, miou_fn=ref_miou, **quiet()
    )
    assert isinstance(h, History)
    assert len(h.train_loss) == len(h.val_miou) == len(h.val_loss) == len(h.lr) == len(h.epoch_time) == 6
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert h.val_miou[-1] > 0.8
    assert 0.0 <= h.val_pixel_acc[-1] <= 1.0
    assert h.best_epoch is not None and h.best_miou == max(h.val_miou)
    assert not h.stopped_early
    json.dumps(h.as_dict())  # JSON-serialisable for notebooks that save results


def test_fit_is_reproducible_with_seed():
    runs = []
    for _ in range(2):
        train, _ = loaders()
        torch.manual_seed(999)  # fit re-seeds, so the shuffling order must not depend on this
        model = tiny_model()
        runs.append(fit(model, train, n_class=N_CLASS, epochs=2, seed=123, **quiet()).train_loss)
    assert runs[0] == runs[1]


def test_early_stopping_triggers_after_patience():
    train, val = loaders()
    h = fit(
        tiny_model(),
        train,
        val,
        n_class=N_CLASS,
        epochs=10,
        early_stopping_patience=2,
        confusion_fn=ref_confusion,
        miou_fn=constant_miou(),
        **quiet(),
    )
    assert h.stopped_early
    assert len(h.train_loss) == 3  # epoch 1 is best, epochs 2 and 3 do not improve
    assert h.best_epoch == 1


def test_best_checkpoint_saved_atomically_and_reloaded(tmp_path, capsys):
    train, val = loaders()
    model = tiny_model()
    scores = iter([0.1, 0.9, 0.2, 0.3])
    snapshots = []

    def miou_and_snapshot(conf):
        snapshots.append(copy.deepcopy(model.state_dict()))
        return next(scores)

    ckpt = tmp_path / "sub" / "best.pt"
    h = fit(
        model,
        train,
        val,
        n_class=N_CLASS,
        epochs=4,
        lr=0.5,
        checkpoint_path=ckpt,
        confusion_fn=ref_confusion,
        miou_fn=miou_and_snapshot,
        device="cpu",
        progress=False,
    )
    assert "restored the best weights (epoch 2" in capsys.readouterr().out
    assert h.best_epoch == 2 and h.best_miou == 0.9
    assert h.best_checkpoint == ckpt and ckpt.is_file()
    assert [p.name for p in ckpt.parent.iterdir()] == ["best.pt"]  # no temp files left behind
    saved = torch.load(ckpt, weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[1][k])  # weights of epoch 2 are back in the model
        assert torch.equal(v, saved[k])
    assert not torch.equal(model.weight, snapshots[3]["weight"])


def test_checkpoint_without_validation_holds_latest(tmp_path):
    train, _ = loaders()
    model = tiny_model()
    h = fit(model, train, n_class=N_CLASS, epochs=2, checkpoint_path=tmp_path / "last.pt", **quiet())
    assert h.best_epoch is None and h.val_miou == []
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["weight"], model.weight.detach())


def test_evaluate_sums_confusion_over_uneven_batches():
    ds = toy_data(n=7)
    model = tiny_model()
    calls = []

    def counting_confusion(pred, target, n_class):
        calls.append(pred.shape[0])
        return ref_confusion(pred, target, n_class)

    res = evaluate(
        model,
        DataLoader(ds, batch_size=3),
        "cpu",
        n_class=N_CLASS,
        confusion_fn=counting_confusion,
        miou_fn=ref_miou,
        loss_fn=nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX),
        progress=False,
    )
    assert calls == [3, 3, 1]
    images, masks = ds.tensors
    with torch.no_grad():
        whole = ref_confusion(model(images).argmax(1), masks, N_CLASS)
    assert torch.equal(res["confusion"], whole)
    assert res["confusion"].dtype == torch.int64
    assert res["miou"] == pytest.approx(ref_miou(whole))
    assert res["pixel_acc"] == pytest.approx(whole.diagonal().sum().item() / whole.sum().item())
    assert isinstance(res["loss"], float)


def test_evaluate_without_loss_and_numpy_confusion():
    ds = toy_data(n=5)
    res = evaluate(
        tiny_model(),
        DataLoader(ds, batch_size=2),
        "cpu",
        n_class=N_CLASS,
        confusion_fn=lambda p, t, k: ref_confusion(p, t, k).numpy(),
        miou_fn=ref_miou,
        progress=False,
        max_steps=2,
    )
    assert res["loss"] is None
    assert res["confusion"].sum() == (ds.tensors[1][:4] != IGNORE_INDEX).sum()


class ModeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, N_CLASS, 1)
        self.bn = nn.BatchNorm2d(N_CLASS)
        self.seen = []

    def forward(self, x):
        self.seen.append(self.training)
        return self.bn(self.conv(x))


@pytest.mark.parametrize("start_training", [True, False])
def test_evaluate_uses_eval_mode_and_restores_modes(start_training):
    model = ModeRecorder().train(start_training)
    model.bn.eval()  # a deliberately frozen submodule must stay as it was
    evaluate(
        model,
        DataLoader(toy_data(4), batch_size=2),
        "cpu",
        n_class=N_CLASS,
        confusion_fn=ref_confusion,
        miou_fn=ref_miou,
        progress=False,
    )
    assert model.seen == [False, False]
    assert model.training is start_training
    assert model.conv.training is start_training
    assert model.bn.training is False
    predict(model, DataLoader(toy_data(4), batch_size=2), "cpu")
    assert model.training is start_training and model.bn.training is False


def test_plateau_scheduler_reduces_lr():
    train, val = loaders()
    h = fit(
        tiny_model(),
        train,
        val,
        n_class=N_CLASS,
        epochs=5,
        lr=0.1,
        scheduler="plateau",
        confusion_fn=ref_confusion,
        miou_fn=constant_miou(),
        **quiet(),
    )
    # patience 2: epochs 2, 3, 4 do not improve on epoch 1, so epoch 5 runs at lr / 10.
    assert h.lr[:4] == [0.1] * 4
    assert h.lr[4] == pytest.approx(0.01)


def test_scheduler_instance_and_named_schedules():
    train, val = loaders()
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=0, factor=0.5)
    h = fit(
        model,
        train,
        val,
        n_class=N_CLASS,
        epochs=3,
        optimizer=opt,
        scheduler=sched,
        confusion_fn=ref_confusion,
        miou_fn=constant_miou(),
        **quiet(),
    )
    assert h.lr == pytest.approx([0.2, 0.2, 0.1])  # epoch 2 does not improve on epoch 1
    for name in ("poly", "cosine"):
        h = fit(tiny_model(), train, n_class=N_CLASS, epochs=3, lr=0.1, scheduler=name, **quiet())
        assert h.lr[0] == 0.1 and h.lr[0] > h.lr[1] > h.lr[2] > 0
    with pytest.raises(ValueError, match="unknown scheduler"):
        fit(tiny_model(), train, n_class=N_CLASS, epochs=1, scheduler="step", **quiet())


def test_fit_argument_checks():
    train, val = loaders()
    with pytest.raises(ValueError, match="early_stopping_patience needs validation"):
        fit(tiny_model(), train, n_class=N_CLASS, epochs=1, early_stopping_patience=1, **quiet())
    with pytest.raises(ValueError, match="both confusion_fn and miou_fn"):
        fit(tiny_model(), train, val, n_class=N_CLASS, epochs=1, confusion_fn=ref_confusion, **quiet())
    with pytest.warns(UserWarning, match="skipping validation"):
        h = fit(tiny_model(), train, val, n_class=N_CLASS, epochs=1, **quiet())
    assert h.val_miou == []


def test_train_one_epoch_max_steps_dict_batches_and_mean_loss():
    images, masks = toy_data(10).tensors
    batches = [{"image": images[i : i + 4], "mask": masks[i : i + 4]} for i in range(0, 10, 4)]
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the loss is a fixed function of the batch
    seen = []

    def loss_fn(logits, target):
        seen.append(logits.shape[0])
        return torch.tensor(float(logits.shape[0]), requires_grad=True) + 0 * logits.sum()

    mean = train_one_epoch(model, batches, loss_fn, opt, "cpu", max_steps=2, progress=False)
    assert seen == [4, 4]
    assert mean == pytest.approx(4.0)
    seen.clear()
    # Mean per image over batches of 4, 4 and 2 images.
    assert train_one_epoch(model, batches, loss_fn, opt, "cpu", progress=False) == pytest.approx(36 / 10)


def test_clear_errors_for_wrong_output_size_and_nan_loss():
    train, _ = loaders()
    with pytest.raises(ValueError, match="upsample"):
        fit(nn.Conv2d(3, N_CLASS, 1, stride=2), train, n_class=N_CLASS, epochs=1, **quiet())
    model = tiny_model()
    with pytest.raises(FloatingPointError, match="learning rate"):
        train_one_epoch(
            model,
            train,
            lambda o, t: o.sum() * float("nan"),
            torch.optim.SGD(model.parameters(), lr=0.1),
            "cpu",
            progress=False,
        )


def test_channels_last_runs_on_cpu():
    train, val = loaders()
    h = fit(
        tiny_model(),
        train,
        val,
        n_class=N_CLASS,
        epochs=1,
        channels_last=True,
        max_steps_per_epoch=1,
        confusion_fn=ref_confusion,
        miou_fn=ref_miou,
        **quiet(),
    )
    assert len(h.train_loss) == 1


def test_predict_returns_cpu_tensors():
    ds = toy_data(10)
    images, masks, preds = predict(tiny_model(), DataLoader(ds, batch_size=4), "cpu", max_batches=2)
    assert images.shape == (8, 3, 16, 16)
    assert masks.shape == preds.shape == (8, 16, 16)
    assert preds.dtype == torch.int64 and preds.device.type == "cpu"
    assert torch.equal(masks, ds.tensors[1][:8])


# --- fit with the student's epoch function --------------------------------------------------------


def reference_epoch_fn():
    """The U-Net notebook's unet_train_epoch (the solution: tests only; nothing shipped holds it)."""
    from grader.assignments import load_assignment

    unit = next(u for u in load_assignment("unet").auto_units if u.grade_id == "unet_train_epoch")
    namespace: dict = {}
    exec(unit.source, namespace)
    return namespace["unet_train_epoch"]


def test_fit_trains_every_epoch_with_the_epoch_function_it_is_given():
    """Does fit run epoch_fn once per epoch on (images, masks) already on the device, capped by max_steps, and
    record what it returns, without touching the weights itself?"""
    dataset = toy_data()
    loader = DataLoader(dataset, batch_size=4)
    model = tiny_model()
    before = copy.deepcopy(model.state_dict())
    seen = []

    def epoch_fn(model_view, batches, optimizer, loss_fn, device):
        model_view.train()
        got = [(tuple(x.shape), tuple(y.shape), x.device.type, y.dtype) for x, y in batches]
        seen.append((len(batches), got, type(loss_fn).__name__, str(device)))
        return 0.25 * len(seen)

    history = fit(
        model,
        loader,
        n_class=N_CLASS,
        epochs=3,
        epoch_fn=epoch_fn,
        max_steps_per_epoch=2,
        device="cpu",
        progress=False,
        verbose=False,
    )
    assert history.train_loss == [0.25, 0.5, 0.75]
    assert [s[0] for s in seen] == [2, 2, 2] and all(len(s[1]) == 2 for s in seen)
    assert seen[0][1][0] == ((4, 3, 16, 16), (4, 16, 16), "cpu", torch.int64)
    assert seen[0][2:] == ("CrossEntropyLoss", "cpu")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_correct_epoch_function_trains_like_the_kit_steps():
    """With SGD, does fit with a correct unet_train_epoch end with the kit steps' weights and losses?"""
    dataset = toy_data()
    runs = {}
    for name, epoch_fn in (("kit", None), ("yours", reference_epoch_fn())):
        torch.manual_seed(0)
        model = tiny_model()
        loader = DataLoader(dataset, batch_size=5)  # a smaller last batch
        history = fit(
            model,
            loader,
            n_class=N_CLASS,
            epochs=2,
            epoch_fn=epoch_fn,
            lr=0.1,
            device="cpu",
            progress=False,
            verbose=False,
        )
        runs[name] = (history.train_loss, model.state_dict())
    assert runs["yours"][0] == pytest.approx(runs["kit"][0], rel=1e-6)
    assert runs["kit"][0][1] < runs["kit"][0][0]
    for key, value in runs["kit"][1].items():
        assert torch.allclose(runs["yours"][1][key], value, atol=1e-6), key


def test_the_epoch_function_gets_logits_from_dict_models():
    """Does a torchvision-style model returning {"out": logits} reach epoch_fn as a plain logits model?"""

    class DictModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_model()

        def forward(self, x):
            return {"out": self.net(x), "aux": None}

    dataset = toy_data(n=8)
    history = fit(
        DictModel(),
        DataLoader(dataset, batch_size=4),
        n_class=N_CLASS,
        epochs=1,
        epoch_fn=reference_epoch_fn(),
        device="cpu",
        progress=False,
        verbose=False,
    )
    assert len(history.train_loss) == 1 and history.train_loss[0] > 0


@pytest.mark.parametrize(
    ("returned", "error", "message"),
    [(float("nan"), FloatingPointError, "returned a mean loss of nan"), ([1.0, 2.0], TypeError, "returned list")],
)
def test_an_epoch_function_returning_no_finite_number_is_reported(returned, error, message):
    """Does fit say what is wrong when the epoch function returns NaN or something that is not a number?"""
    dataset = toy_data(n=8)
    with pytest.raises(error, match=message):
        fit(
            tiny_model(),
            DataLoader(dataset, batch_size=4),
            n_class=N_CLASS,
            epochs=1,
            epoch_fn=lambda *args: returned,
            device="cpu",
            progress=False,
            verbose=False,
        )
