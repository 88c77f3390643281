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
