"""``SmallSegNet``: a compact semantic segmentation network for the window maps of the classical part,
with ``normalize_image`` and ``predict_semantic``."""

from __future__ import annotations

import torch
from torch import nn

from starter.constants import IMAGENET_MEAN, IMAGENET_STD


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallSegNet(nn.Module):
    """A small encoder-decoder with skip connections (a U-Net with few channels), trainable on a CPU.

    Inputs:
        n_class: output classes; width: channels of the first stage (doubled per stage, 4 stages).
    Forward:
        (B, 3, H, W) -> logits (B, n_class, H, W); H and W multiples of 8.
    """

    def __init__(self, n_class: int, width: int = 16):
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.ModuleList()
        cin = 3
        for w in widths:
            self.stages.append(nn.Sequential(_conv_bn_relu(cin, w), _conv_bn_relu(w, w)))
            cin = w
        self.merges = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(widths[i + 1] + widths[i], widths[i]), _conv_bn_relu(widths[i], widths[i]))
            for i in range(len(widths) - 1)
        )
        self.head = nn.Conv2d(widths[0], n_class, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for index, stage in enumerate(self.stages):
            x = stage(x if index == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for merge in reversed(self.merges):
            skip = skips.pop()
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = merge(torch.cat([x, skip], dim=1))
        return self.head(x)


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) or (B, 3, H, W) in [0, 1] -> ImageNet-normalised (what SmallSegNet is trained on)."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return (image - mean) / std


@torch.no_grad()
def predict_semantic(model: nn.Module, image: torch.Tensor, device: torch.device | str, *, multiple: int = 8):
    """Class probabilities of one image in [0, 1] (3, H, W), padded to a multiple of ``multiple`` on
    the bottom/right and cropped back. Returns: float (n_class, H, W) on the CPU."""
    was_training = model.training
    model.eval()
    try:
        size = tuple(image.shape[-2:])
        pad_h, pad_w = (-size[0]) % multiple, (-size[1]) % multiple
        x = nn.functional.pad(normalize_image(image)[None], (0, pad_w, 0, pad_h))
        logits = model(x.to(device))[0, :, : size[0], : size[1]]
    finally:
        model.train(was_training)
    return logits.float().softmax(0).cpu()
