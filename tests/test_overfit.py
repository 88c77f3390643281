"""overfit_one_batch: a healthy model memorises one batch; the usual bugs raise OverfitError with a checklist."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from starter.constants import IGNORE_INDEX
from starter.train import OverfitError, overfit_one_batch

N_CLASS = 3


def batch():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 12, 12, generator=g)
    masks = torch.randint(0, N_CLASS, (2, 12, 12), generator=g)
    masks[:, 0, :] = IGNORE_INDEX
    return images, masks


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, N_CLASS, 1)
    )


class DetachedOutput(nn.Module):
    """The bug: the output is detached, plus 0 x a learnable scalar so that the loss still has a graph."""

    def __init__(self):
        super().__init__()
        self.net = tiny_net()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.net(x).detach() + 0 * self.scale


def test_healthy_model_overfits_quickly_and_is_left_untouched():
    """Does a small conv net drive one batch's loss far down (in a fraction of a second), leaving the caller's model as it was?"""
    model = tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = overfit_one_batch(model, batch(), steps=40, lr=1e-2, device="cpu", progress=False)
    assert len(losses) == 40 and losses[-1] < 0.1 * losses[0]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_dict_batch_and_absolute_target():
    """Are dict batches accepted, and does an explicit target_loss replace the relative criterion?"""
    images, masks = batch()
    losses = overfit_one_batch(tiny_net(), {"image": images, "mask": masks}, steps=10, lr=1e-2, device="cpu",
                               target_loss=10.0, progress=False)  # fmt: skip
    assert losses[-1] < 10.0
    with pytest.raises(OverfitError, match="not below 0.0000"):
        overfit_one_batch(tiny_net(), batch(), steps=5, lr=1e-2, device="cpu", target_loss=0.0, progress=False)


def frozen_net() -> nn.Module:
    model = tiny_net()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.mark.parametrize("make", [frozen_net, DetachedOutput], ids=["frozen", "detached"])
def test_bugs_raise_with_the_checklist(make):
    """Do frozen parameters and a detached output raise OverfitError listing the usual causes?"""
    with pytest.raises(OverfitError) as caught:
        overfit_one_batch(make(), batch(), steps=30, lr=1e-2, device="cpu", progress=False)
    message = str(caught.value)
    for hint in ("learning rate", "upsampled", "requires_grad=False", "zero_grad", "ReLU", ".detach()", "0..n_class-1"):
        assert hint in message, hint
    assert isinstance(caught.value, RuntimeError)


def test_bad_masks_and_wrong_size_are_named():
    """Are out-of-range labels and an output of the wrong size reported as OverfitError with the precise cause?"""
    images, masks = batch()
    masks[0, 5, 5] = 7
    with pytest.raises(OverfitError, match=r"masks hold \[7\]"):
        overfit_one_batch(tiny_net(), (images, masks), steps=3, device="cpu", progress=False)
    shrinking = nn.Sequential(tiny_net(), nn.MaxPool2d(2))
    with pytest.raises(OverfitError, match="upsample"):
        overfit_one_batch(shrinking, batch(), steps=3, device="cpu", progress=False)


def reference_epoch_fn():
    """The U-Net notebook's unet_train_epoch (the solution: tests only; nothing shipped holds it)."""
    from grader.assignments import load_assignment

    unit = next(u for u in load_assignment("unet").auto_units if u.grade_id == "unet_train_epoch")
    namespace: dict = {}
    exec(unit.source, namespace)
    return namespace["unet_train_epoch"]


def test_overfit_with_the_students_epoch_function():
    """With a correct unet_train_epoch as epoch_fn, does every step run it once on the batch and the loss fall?"""
    calls = []
    epoch_fn = reference_epoch_fn()

    def counted(model, loader, optimizer, loss_fn, device):
        calls.append(len(loader))
        return epoch_fn(model, loader, optimizer, loss_fn, device)

    losses = overfit_one_batch(tiny_net(), batch(), epoch_fn=counted, steps=40, lr=1e-2, device="cpu", progress=False)
    assert calls == [1] * 40 and len(losses) == 40 and losses[-1] < 0.2 * losses[0]


def test_overfit_reports_a_broken_epoch_function():
    """Does a loop that never steps, or one that fails, raise OverfitError with the checklist?"""

    def never_steps(model, loader, optimizer, loss_fn, device):
        model.train()
        images, masks = next(iter(loader))
        return loss_fn(model(images), masks).item()

    with pytest.raises(OverfitError, match="(?s)not below.*usual causes"):
        overfit_one_batch(tiny_net(), batch(), epoch_fn=never_steps, steps=5, device="cpu", progress=False)

    def detached(model, loader, optimizer, loss_fn, device):
        images, masks = next(iter(loader))
        loss_fn(model(images).detach(), masks).backward()

    with pytest.raises(OverfitError, match="your epoch function failed"):
        overfit_one_batch(tiny_net(), batch(), epoch_fn=detached, steps=5, device="cpu", progress=False)
