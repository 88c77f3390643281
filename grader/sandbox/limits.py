"""The limits of one worker, and the resource limits (rlimits) they become inside it."""

from __future__ import annotations

from dataclasses import dataclass

SHM_MB = 64  # the worker's /dev/shm (bubblewrap layer)


@dataclass
class Limits:
    cell_timeout: float = 120.0
    probe_timeout: float = 60.0
    startup_timeout: float = 120.0
    submission_timeout: float = 900.0  # all probes of one submission together
    probe_timeout_cap: float | None = None  # if set, also caps the timeouts checks ask for
    memory_mb: int = 6144
    cpu_seconds: int = 1800
    max_processes: int = 128  # threads count too (torch/OpenMP pools need about 10)
    file_size_mb: int = 256
    scratch_mb: int = 512
    open_files: int = 256
    output_keep_bytes: int = 16 * 1024


def rlimits(limits: Limits, *, processes: bool) -> dict[str, int]:
    """The rlimits a worker sets on itself before any student code runs. processes: include
    RLIMIT_NPROC, which counts every process of the worker's uid; only where that uid is the
    worker's alone (its own user namespace, or a spare uid)."""
    memory = limits.memory_mb * 2**20
    values = {
        "RLIMIT_CPU": limits.cpu_seconds,
        # CUDA builds of torch reserve ~3.5 GB of address space at import; the cgroup or the
        # watchdog is the real memory cap over all processes, this is the per-process backstop.
        "RLIMIT_AS": memory + 8 * 2**30,
        "RLIMIT_FSIZE": limits.file_size_mb * 2**20,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_CORE": 0,
    }
    if processes:
        values["RLIMIT_NPROC"] = limits.max_processes
    return values
