"""Tests for starter.config: run profile and fast mode parsing, data root, device choice, seeding."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from starter.config import (
    data_root,
    describe_environment,
    fast_mode,
    get_device,
    pick,
    print_environment,
    profile,
    seed_everything,
)
from starter.constants import ENV_DATA, ENV_FAST, ENV_PROFILE


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", " Yes "])
def test_fast_mode_on(monkeypatch, value):
    monkeypatch.setenv(ENV_FAST, value)
    assert fast_mode() is True


@pytest.mark.parametrize("value", ["0", "false", "no", "", "2", "on"])
def test_fast_mode_off(monkeypatch, value):
    monkeypatch.setenv(ENV_FAST, value)
    assert fast_mode() is False


def test_fast_mode_unset(monkeypatch):
    monkeypatch.delenv(ENV_FAST, raising=False)
    monkeypatch.delenv(ENV_PROFILE, raising=False)
    assert fast_mode() is False


@pytest.mark.parametrize(
    ("fast", "value", "expected"),
    [
        ("", "", "full"),
        ("", "cpu", "cpu"),
        ("", " CPU ", "cpu"),
        ("", "fast", "fast"),
        ("", "full", "full"),
        ("1", "", "fast"),
        ("yes", "fast", "fast"),
        ("0", "cpu", "cpu"),
    ],
)
def test_profile(monkeypatch, fast, value, expected):
    """Does $SEGKIT_PROFILE pick the profile, $SEGKIT_FAST=1 still mean "fast", and nothing mean "full"?"""
    monkeypatch.setenv(ENV_FAST, fast)
    monkeypatch.setenv(ENV_PROFILE, value)
    assert profile() == expected
    assert fast_mode() is (expected == "fast")
    assert pick(fast=64, cpu=128, full=256) == {"fast": 64, "cpu": 128, "full": 256}[expected]


def test_profile_unset_is_full(monkeypatch):
    monkeypatch.delenv(ENV_FAST, raising=False)
    monkeypatch.delenv(ENV_PROFILE, raising=False)
    assert profile() == "full" and pick(fast="a", cpu="b", full="c") == "c"


def test_profile_errors(monkeypatch):
    """Are an unknown profile and a contradiction with $SEGKIT_FAST refused with what to do?"""
    monkeypatch.delenv(ENV_FAST, raising=False)
    monkeypatch.setenv(ENV_PROFILE, "gpu")
    with pytest.raises(ValueError, match="fast, cpu, full"):
        profile()
    with pytest.raises(ValueError, match="not a profile"):
        fast_mode()
    monkeypatch.setenv(ENV_PROFILE, "cpu")
    monkeypatch.setenv(ENV_FAST, "1")
    with pytest.raises(ValueError, match="SEGKIT_FAST.*SEGKIT_PROFILE='cpu'"):
        profile()
    with pytest.raises(TypeError):
        pick(fast=1, cpu=2)  # every profile needs its value


def test_data_root_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_DATA, str(tmp_path / "data"))
    assert data_root() == tmp_path / "data"
    monkeypatch.setenv(ENV_DATA, "~/somewhere")
    assert data_root() == Path.home() / "somewhere"
    monkeypatch.delenv(ENV_DATA)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_root() == tmp_path / "segkit-data"
    monkeypatch.setenv(ENV_DATA, "")
    assert data_root() == tmp_path / "segkit-data"


def test_get_device():
    auto = get_device()
    assert isinstance(auto, torch.device)
    if not torch.cuda.is_available():
        assert auto.type in ("cpu", "mps")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device("cuda")
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")


def test_seed_everything_reproducible():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    seed_everything(7)
    a = draw()
    seed_everything(7)
    assert draw() == a
    seed_everything(8)
    assert draw() != a


def test_seed_everything_deterministic_flags():
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic
    finally:
        seed_everything(0)  # deterministic=False switches the flags back off
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic


def test_describe_environment(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(ENV_FAST, "1")
    monkeypatch.delenv(ENV_PROFILE, raising=False)
    monkeypatch.setenv(ENV_DATA, str(tmp_path))
    text = describe_environment()
    assert torch.__version__ in text
    assert "torchvision" in text and "python" in text
    assert "fast mode    on" in text and "profile      fast" in text
    monkeypatch.setenv(ENV_FAST, "")
    monkeypatch.setenv(ENV_PROFILE, "cpu")
    assert "profile      cpu" in describe_environment() and "fast mode    off" in describe_environment()
    monkeypatch.setenv(ENV_FAST, "1")
    monkeypatch.delenv(ENV_PROFILE)
    assert str(tmp_path) in text and "exists" in text
    print_environment()
    assert capsys.readouterr().out.strip() == text
