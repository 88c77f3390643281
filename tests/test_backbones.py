"""Tests for starter.backbones, fully offline: TORCH_HOME points at tmp_path, downloads are stubbed."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models import ResNet18_Weights, VGG16_Weights

from starter import backbones
from starter.backbones import (
    PretrainedWeightsUnavailable,
    is_cached,
    load_resnet18,
    load_state_dict_file,
    load_vgg16,
    weights_cache_path,
)


class NoNetwork(OSError):
    pass


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty torch hub cache in tmp_path; any download attempt raises and is recorded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    attempts = []

    def refuse(url, dst, *args, **kwargs):
        attempts.append((url, dst))
        raise NoNetwork("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return attempts


def test_cache_path_follows_torch_home(offline, tmp_path):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    assert weights_cache_path(VGG16_Weights.IMAGENET1K_V1) == hub / "vgg16-397923af.pth"
    assert weights_cache_path(ResNet18_Weights.IMAGENET1K_V1) == hub / "resnet18-f37072fd.pth"
    assert not is_cached(VGG16_Weights.IMAGENET1K_V1)


@pytest.mark.parametrize(
    "loader, weights",
    [(load_vgg16, VGG16_Weights.IMAGENET1K_V1), (load_resnet18, ResNet18_Weights.IMAGENET1K_V1)],
)
def test_offline_raises_clear_error(offline, loader, weights):
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        loader()
    message = str(info.value)
    assert str(weights_cache_path(weights)) in message
    assert weights.url in message
    assert "network is unreachable" in message
    assert isinstance(info.value, RuntimeError)
    assert offline == [(weights.url, str(weights_cache_path(weights)))]  # one attempt, right target


def test_any_download_failure_becomes_clear_error(offline, monkeypatch):
    def broken(url, dst):
        raise ValueError("invalid hash value")

    monkeypatch.setattr(backbones, "_download", broken)
    with pytest.raises(PretrainedWeightsUnavailable, match="invalid hash value"):
        load_resnet18()


def test_cached_resnet18_loads_without_network(offline):
    reference = torchvision.models.resnet18(weights=None)
    path = weights_cache_path(ResNet18_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    assert is_cached(ResNet18_Weights.IMAGENET1K_V1)

    model = load_resnet18()
    assert offline == []
    for k, v in reference.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_corrupt_cached_file_is_reported(offline):
    path = weights_cache_path(ResNet18_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated download")
    with pytest.raises(PretrainedWeightsUnavailable, match="delete it"):
        load_resnet18()
    assert offline == []


def test_pretrained_false_never_touches_network(offline):
    vgg = load_vgg16(pretrained=False)
    assert isinstance(vgg, torchvision.models.VGG)
    assert isinstance(load_resnet18(pretrained=False), torchvision.models.ResNet)
    assert offline == []


def test_load_state_dict_file_roundtrip(tmp_path):
    src = torchvision.models.resnet18(weights=None)
    torch.save(src.state_dict(), tmp_path / "r18.pt")
    dst = torchvision.models.resnet18(weights=None)
    assert load_state_dict_file(dst, tmp_path / "r18.pt") is dst
    assert torch.equal(dst.conv1.weight, src.conv1.weight)
    # Training-script layout {"state_dict": ...} is accepted too.
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    load_state_dict_file(torchvision.models.resnet18(weights=None), tmp_path / "ckpt.pt")

    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_state_dict_file(dst, tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="could not read"):
        load_state_dict_file(dst, tmp_path / "bad.pt")
