"""ImageNet backbones for the FCN/UNet assignments, with an offline-friendly cache check.

Weights come through torchvision's weights API and live in its usual cache,
`torch.hub.get_dir()/checkpoints/<file name>` (by default ~/.cache/torch/hub/checkpoints,
moved by $TORCH_HOME). When a machine has no internet, copy the file there by hand:
`PretrainedWeightsUnavailable` says exactly which file and where.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet18_Weights, VGG16_Weights, WeightsEnum

# Give up on an unreachable server quickly instead of hanging a notebook cell.
DOWNLOAD_TIMEOUT_S = 30.0


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights are neither in the torch hub cache nor downloadable."""


def weights_cache_path(weights: WeightsEnum) -> Path:
    """Inputs: a torchvision weights enum, e.g. VGG16_Weights.IMAGENET1K_V1.

    Returns:
        Path where torchvision looks for (and downloads) that file:
        torch.hub.get_dir()/checkpoints/<file name of weights.url>.
    """
    file_name = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def is_cached(weights: WeightsEnum) -> bool:
    """Whether the weights file is already in the torch hub cache (no network access)."""
    return weights_cache_path(weights).is_file()


def _download(url: str, dst: Path) -> None:
    """Download `url` to `dst`, checking the hash prefix in the file name like torchvision does."""
    match = re.search(r"-([a-f0-9]+)\.", dst.name)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urllib has no timeout by default
    try:
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=match.group(1) if match else None, progress=True)
    finally:
        socket.setdefaulttimeout(previous)


def _unavailable_message(weights: WeightsEnum, path: Path, reason: str) -> str:
    return (
        f"pretrained weights {weights!r} are not available ({reason}).\n"
        f"  Download:  {weights.url}\n"
        f"  Save as:   {path}\n"
        "On a machine with internet access run e.g.\n"
        f"  mkdir -p '{path.parent}' && curl -L -o '{path}' {weights.url}\n"
        "then run this cell again (the torch hub folder moves with $TORCH_HOME). "
        "Or pass pretrained=False to train from scratch."
    )


def ensure_weights(weights: WeightsEnum) -> Path:
    """Make sure the weights file is in the cache, downloading it only when missing.

    Returns:
        Path of the cached file.
    Raises:
        PretrainedWeightsUnavailable: not cached and the download failed (offline, proxy,
            timeout, bad hash...). The message names the URL and the exact file path.
    """
    path = weights_cache_path(weights)
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _download(weights.url, path)
    except Exception as e:  # any failure, network or disk, becomes the same actionable error
        raise PretrainedWeightsUnavailable(
            _unavailable_message(weights, path, f"not in the cache and the download failed: {e}")
        ) from e
    if not path.is_file():
        raise PretrainedWeightsUnavailable(_unavailable_message(weights, path, "download produced no file"))
    return path


def load_state_dict_file(model: nn.Module, path: str | os.PathLike, *, strict: bool = True) -> nn.Module:
    """Load a state dict saved with torch.save(model.state_dict(), path) into `model`.

    Inputs:
        model: a model with the same architecture; path: the .pt/.pth file;
        strict: require exactly matching keys (as nn.Module.load_state_dict).
    Returns:
        the same model, for chaining.
    Raises:
        FileNotFoundError: no such file. RuntimeError: unreadable file or mismatched keys.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RuntimeError(
            f"could not read {path} as a PyTorch state dict ({e}); the file may be truncated - "
            "delete it and download/save it again"
        ) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # common training-script checkpoint layout
    model.load_state_dict(state, strict=strict)
    return model


def _load(builder, weights: WeightsEnum, pretrained: bool) -> nn.Module:
    if not pretrained:
        return builder(weights=None)
    path = ensure_weights(weights)
    # The file is in torchvision's cache now, so the weights API loads it without the network.
    try:
        return builder(weights=weights)
    except Exception as e:  # truncated download, wrong file copied by hand, ...
        raise PretrainedWeightsUnavailable(
            _unavailable_message(weights, path, f"the cached file is unusable, delete it and try again: {e}")
        ) from e


def load_vgg16(*, pretrained: bool = True) -> nn.Module:
    """torchvision VGG16 (no batch norm), ImageNet weights VGG16_Weights.IMAGENET1K_V1 (528 MB).

    Returns:
        torchvision.models.VGG; `.features` is the convolutional part (stride 32).
    Raises:
        PretrainedWeightsUnavailable: pretrained=True, weights not cached and not downloadable.
    """
    return _load(torchvision.models.vgg16, VGG16_Weights.IMAGENET1K_V1, pretrained)


def load_resnet18(*, pretrained: bool = True) -> nn.Module:
    """torchvision ResNet-18, ImageNet weights ResNet18_Weights.IMAGENET1K_V1 (45 MB).

    Returns:
        torchvision.models.ResNet.
    Raises:
        PretrainedWeightsUnavailable: pretrained=True, weights not cached and not downloadable.
    """
    return _load(torchvision.models.resnet18, ResNet18_Weights.IMAGENET1K_V1, pretrained)


def load_resnet18_weights(*, pretrained: bool = True) -> ResNet18_Weights | None:
    """The `weights=` argument for a model that builds its own ResNet-18 (e.g. an FCN backbone).

    Returns ResNet18_Weights.IMAGENET1K_V1 once the file is in torchvision's cache (downloading it
    if possible), or None when pretrained=False.
    Raises:
        PretrainedWeightsUnavailable: pretrained=True, weights not cached and not downloadable.
    """
    if not pretrained:
        return None
    ensure_weights(ResNet18_Weights.IMAGENET1K_V1)
    return ResNet18_Weights.IMAGENET1K_V1
