"""Run-time configuration shared by every notebook: profile (fast mode), device, seeds, data root.

Typical first cell of a notebook::

    from starter.config import fast_mode, get_device, seed_everything, print_environment
    seed_everything(0)
    device = get_device()
    print_environment()
"""

from __future__ import annotations

import os
import platform
import random
import sys

import numpy as np
import torch

from starter.common import data_root, fast_mode, pick, profile
from starter.constants import ENV_DATA, ENV_FAST, ENV_PROFILE

# profile, pick, fast_mode and data_root live in starter.common (no torch import there); the notebooks
# import them from here with the rest of the configuration.
__all__ = [
    "data_root",
    "describe_environment",
    "fast_mode",
    "get_device",
    "pick",
    "print_environment",
    "profile",
    "seed_everything",
]


def _mps_available() -> bool:
    # torch.backends.mps exists on every build, but guard anyway for exotic builds.
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """Pick the device to train on.

    Inputs:
        prefer: None to choose automatically (CUDA, then Apple MPS, then CPU), or a device
            such as "cpu", "cuda", "cuda:1", "mps" to force one.
    Returns:
        torch.device
    Raises:
        RuntimeError: the preferred accelerator is not available on this machine.
    """
    if prefer is not None:
        device = torch.device(prefer)  # raises a clear error itself for unknown strings
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"get_device({str(prefer)!r}): CUDA is not available here "
                "(no NVIDIA GPU, or a CPU-only PyTorch build). Use get_device() to fall back automatically."
            )
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"get_device({str(prefer)!r}): only {torch.cuda.device_count()} CUDA device(s) visible.")
        if device.type == "mps" and not _mps_available():
            raise RuntimeError(f"get_device({str(prefer)!r}): Apple MPS is not available on this machine.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every CUDA device) random generators.

    Inputs:
        seed: any integer.
        deterministic: also ask PyTorch and cuDNN for deterministic kernels (slower on GPU;
            operations without a deterministic implementation only warn). False switches
            those flags back off, so the last call decides.
    """
    seed = int(seed)
    random.seed(seed)
    # NumPy's legacy global generator only accepts 32-bit seeds.
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device in current PyTorch
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    # Only affects subprocesses (e.g. DataLoader workers started with spawn), not this interpreter.
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        # cuBLAS needs this workspace setting for deterministic matmuls on CUDA >= 10.2.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = deterministic
    # Only when the setting changes: the call imports torch's compiler stack (about 2 s of CPU per
    # process), which a notebook's setup cell and every grading worker would otherwise pay for nothing.
    if deterministic or torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(deterministic, warn_only=True)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"cuda:{index} ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "mps (Apple GPU)"
    cpu = platform.processor() or platform.machine() or "unknown CPU"
    return f"cpu ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def describe_environment() -> str:
    """A few lines describing the environment, for the top of a notebook or a bug report.

    Returns:
        str with the Python, torch and torchvision versions, the device get_device() picks,
        the run profile and whether fast mode is on, and the data root (and whether it exists).
    """
    try:
        import torchvision

        tv_version = torchvision.__version__
    except ImportError:  # the kit needs torchvision, but describing the problem beats crashing
        tv_version = "not installed"
    root = data_root()
    lines = [
        f"python       {platform.python_version()} ({sys.executable})",
        f"torch        {torch.__version__} (CUDA build: {torch.version.cuda or 'none'})",
        f"torchvision  {tv_version}",
        f"device       {_device_name(get_device())}",
        f"profile      {profile()} (${ENV_PROFILE}: fast, cpu or full)",
        f"fast mode    {'on' if fast_mode() else 'off'} (${ENV_FAST})",
        f"data root    {root} ({'exists' if root.is_dir() else 'missing'}; ${ENV_DATA})",
    ]
    return "\n".join(lines)


def print_environment() -> None:
    """Print describe_environment()."""
    print(describe_environment())


def _fast_notebook_threads() -> None:
    """A notebook kernel in the fast profile computes with one torch thread.

    Fast mode's tensors are tiny: a second thread's start-up and spin-waiting cost more than it
    saves, several times more where the cores are shared (CI runs two notebooks at once on 2
    cores; a ResNet-18 step on 2 images of 64 px took 10x longer with 2 threads than with 1 there).
    Only in a notebook kernel (ipykernel loaded), never where the grader imports this module, and
    never over an explicit $OMP_NUM_THREADS; the cpu and full profiles keep torch's default.
    """
    try:
        fast = fast_mode()
    except ValueError:  # a misconfigured profile: the notebook's setup cell reports it
        return
    if fast and "ipykernel" in sys.modules and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(1)


_fast_notebook_threads()
