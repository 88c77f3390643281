"""Given code of the instance notebook's deep watershed (Bai & Urtasun, CVPR 2017): the two-head network,
its training data and loop, and prediction. The graded parts (energy targets, the loss over the levels,
the post-processing) are the student's and are passed in as functions.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from starter.instance import normalize_image

IGNORE = 255  # semantic target of unlabelled pixels


def ids_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Instance masks (N, H, W) -> int64 id map (H, W): 0 = background, k + 1 on mask k's pixels.

    Where masks overlap the later one wins (rectangles of neighbouring windows may share a few pixels).
    """
    ids = torch.zeros(masks.shape[-2:], dtype=torch.int64)
    for k, mask in enumerate(masks.bool()):
        ids[mask] = k + 1
    return ids


class TwoHeadNet(nn.Module):
    """A shared encoder-decoder (a copy of a segmentation network without its last layer) and two heads.

    Inputs:
        trunk: a network whose ``head`` is its final 1x1 convolution (SmallSegNet); it is copied, and its
        head replaced, so the features before the head feed both heads; n_levels: K energy levels.
    Forward:
        (B, 3, H, W) -> (semantic logits (B, 2, H, W): not window / window, energy logits (B, K, H, W)).
    """

    def __init__(self, trunk: nn.Module, n_levels: int):
        super().__init__()
        self.trunk = copy.deepcopy(trunk)
        width = self.trunk.head.in_channels
        self.trunk.head = nn.Identity()
        self.semantic_head = nn.Conv2d(width, 2, 1)
        # The energy needs a little more context than one 1x1 layer: one 3x3 block of its own first.
        self.energy_head = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, n_levels, 1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(x)
        return self.semantic_head(features), self.energy_head(features)


@dataclass
class EnergySample:
    """One facade, ready for training: normalised image, semantic target, energy levels, object pixels."""

    image: torch.Tensor  # float32 (3, H, W), ImageNet-normalised
    semantic: torch.Tensor  # int64 (H, W): 1 window, 0 not, IGNORE unlabelled
    levels: torch.Tensor  # int64 (H, W): the energy targets
    objects: torch.Tensor  # bool (H, W): pixels of a window instance


class WindowEnergyData(Dataset):
    """Window energy targets of every facade of a CMPFacadeInstances split, computed once with ``energy_fn``.

    Items are random ``crop`` x ``crop`` crops (padded where the facade is smaller; padding is ignored),
    flipped left-right half of the time: crops keep the windows' scale and cost a fraction of a whole facade.
    """

    def __init__(
        self,
        facades: Dataset,
        window_class: int,
        window_label: int,
        energy_fn: Callable[..., torch.Tensor],
        n_levels: int,
        step: float,
        crop: int,
        limit: int | None = None,
    ):
        self.crop = crop
        self.samples: list[EnergySample] = []
        for index in range(len(facades) if limit is None else min(limit, len(facades))):
            label_mask = facades.label_mask(index)
            masks, labels, _ = facades.instance_masks(index)
            ids = ids_from_masks(masks[labels == window_label])
            semantic = (label_mask == window_class).long()
            semantic[label_mask == IGNORE] = IGNORE
            levels = energy_fn(ids, n_levels, step)
            self.samples.append(
                EnergySample(normalize_image(facades.load_image(index)), semantic, levels.long(), ids > 0)
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        height, width = sample.semantic.shape
        top = int(torch.randint(0, max(height - self.crop, 0) + 1, ()))
        left = int(torch.randint(0, max(width - self.crop, 0) + 1, ()))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        image = sample.image[(slice(None), *window)]
        semantic, levels, objects = sample.semantic[window], sample.levels[window], sample.objects[window]
        pad = (0, self.crop - image.shape[-1], 0, self.crop - image.shape[-2])
        image = nn.functional.pad(image, pad)
        semantic = nn.functional.pad(semantic, pad, value=IGNORE)
        levels, objects = nn.functional.pad(levels, pad), nn.functional.pad(objects, pad)
        if torch.rand(()) < 0.5:  # the distance to the boundary is symmetric: flip all four alike
            image, semantic, levels, objects = (t.flip(-1) for t in (image, semantic, levels, objects))
        return image, semantic, levels, objects


@dataclass
class TwoHeadHistory:
    """Mean losses and seconds of every epoch."""

    semantic_loss: list[float] = field(default_factory=list)
    energy_loss: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)


def train_two_heads(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    energy_loss_fn: Callable[..., torch.Tensor],
    *,
    epochs: int,
    lr: float,
    device: torch.device | str,
    energy_weight: float = 1.0,
    max_steps_per_epoch: int | None = None,
    verbose: bool = True,
) -> TwoHeadHistory:
    """AdamW with cosine decay on cross-entropy(semantic) + energy_weight * energy_loss_fn(energy logits,
    levels, object pixels). Returns: the losses per epoch."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (max_steps_per_epoch or len(loader))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    semantic_loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)
    history = TwoHeadHistory()
    for epoch in range(epochs):
        started, totals, n = time.time(), [0.0, 0.0], 0
        for step, (images, semantic, levels, objects) in enumerate(loader):
            if max_steps_per_epoch is not None and step >= max_steps_per_epoch:
                break
            images, semantic = images.to(device), semantic.to(device)
            levels, objects = levels.to(device), objects.to(device)
            semantic_logits, energy_logits = model(images)
            semantic_loss = semantic_loss_fn(semantic_logits, semantic)
            energy_loss = energy_loss_fn(energy_logits, levels, objects)
            optimizer.zero_grad()
            (semantic_loss + energy_weight * energy_loss).backward()
            optimizer.step()
            schedule.step()
            totals[0] += float(semantic_loss.detach())
            totals[1] += float(energy_loss.detach())
            n += 1
        history.semantic_loss.append(totals[0] / max(n, 1))
        history.energy_loss.append(totals[1] / max(n, 1))
        history.epoch_time.append(time.time() - started)
        if verbose:
            print(
                f"epoch {epoch + 1}/{epochs}: semantic loss {history.semantic_loss[-1]:.3f}, "
                f"energy loss {history.energy_loss[-1]:.3f} ({history.epoch_time[-1]:.0f} s)"
            )
    return history


@torch.no_grad()
def predict_two_heads(
    model: nn.Module, image: torch.Tensor, device: torch.device | str, *, multiple: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image in [0, 1] (3, H, W) -> (window probability float (H, W), energy level int64 (H, W) = the
    most likely level), on the CPU; padded to a multiple of ``multiple`` and cropped back."""
    was_training = model.training
    model.eval()
    try:
        rows, cols = image.shape[-2:]
        pad = (0, (-cols) % multiple, 0, (-rows) % multiple)
        x = nn.functional.pad(normalize_image(image)[None], pad).to(device)
        semantic_logits, energy_logits = (out[0, :, :rows, :cols].float().cpu() for out in model(x))
    finally:
        model.train(was_training)
    return semantic_logits.softmax(0)[1], energy_logits.argmax(0)


def level_histogram(levels: Sequence[torch.Tensor], objects: Sequence[torch.Tensor], n_levels: int) -> np.ndarray:
    """Fraction of the object pixels at each level (what inverse-frequency weights even out)."""
    counts = sum(
        (torch.bincount(lv[ob].reshape(-1), minlength=n_levels) for lv, ob in zip(levels, objects)),
        torch.zeros(n_levels, dtype=torch.int64),
    )
    return (counts / max(int(counts.sum()), 1)).numpy()
