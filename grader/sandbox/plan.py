"""The pure plan of a worker's sandbox: what it sees (a typed list of mount operations, in the
order bubblewrap applies them), its environment, its command line and the kit files it needs.

Building a plan reads the host (which folders exist, which are links) and changes nothing: no
folder is made, no uid claimed, no cgroup created. bubblewrap.py renders a plan to a command
line and executes it; landlock_layer.py turns the same read-only list into a Landlock plan.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .confine import ETC_FILES
from .errors import SandboxUnavailable
from .limits import SHM_MB, Limits

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent.parent
WORKER_SCRIPT = PACKAGE_DIR.parent / "worker.py"
STUDENT_PACKAGES = ("starter",)  # what a student notebook may import from the kit
# Files of this package the worker side loads by path (it sees no grader/): the frame protocol
# always; the confinement code where the worker confines itself (Landlock layer).
WORKER_SIDE = ("protocol.py", "launch.py")
CONFINE_SIDE = ("confine.py", "landlock.py", "seccomp.py")
# Paths inside the bubblewrap sandbox.
SANDBOX_KIT = "/segkit"
SANDBOX_SCRATCH = "/scratch"
SANDBOX_UID = 1000
ETC_ALLOW = ETC_FILES  # one home: confine.ETC_FILES


# -- mount operations (bubblewrap's vocabulary) ---------------------------------------------------


@dataclass(frozen=True)
class RoBind:
    source: str  # a host path
    dest: str
    optional: bool = False  # skipped when the source is missing


@dataclass(frozen=True)
class Symlink:
    target: str
    dest: str


@dataclass(frozen=True)
class Tmpfs:
    dest: str
    size_bytes: int | None = None
    perms: str | None = None


@dataclass(frozen=True)
class Proc:
    dest: str = "/proc"


@dataclass(frozen=True)
class Dev:
    dest: str = "/dev"


@dataclass(frozen=True)
class RemountRo:
    dest: str


@dataclass(frozen=True)
class GeneratedFile:
    """A small file written at start-up (passwd, group, hostname) and bound read-only at dest."""

    dest: str
    text: str


Op = RoBind | Symlink | Tmpfs | Proc | Dev | RemountRo | GeneratedFile


@dataclass(frozen=True)
class MountPlan:
    """One bubblewrap sandbox: its operations in order, environment, user and whether it keeps
    capabilities inside its user namespace (the worker template does, to mount per worker)."""

    ops: tuple[Op, ...]
    env: tuple[tuple[str, str], ...]
    keep_caps: bool = False
    uid: int = SANDBOX_UID
    hostname: str = "sandbox"
    chdir: str = SANDBOX_SCRATCH

    def host_sources(self) -> list[str]:
        """Every host path bound into the sandbox (staged for a spare uid as root)."""
        return [op.source for op in self.ops if isinstance(op, RoBind)]


# -- the worker's command line and environment (written once, for every layer) ------------------


def worker_environment(home: str) -> dict[str, str]:
    """The whole environment of a worker and of a template, with `home` its scratch folder."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "USER": "student",
        "LOGNAME": "student",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "CUDA_VISIBLE_DEVICES": "",
        "SEGKIT_FAST": "1",
        "SEGKIT_GRADING": "1",
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "MALLOC_ARENA_MAX": "2",
        "MPLCONFIGDIR": f"{home}/.matplotlib",
    }


def python_argv(kit: str) -> list[str]:
    return [sys.executable, "-I", "-u", "-B", f"{kit}/worker.py"]


def worker_argv(kit: str, request_fd: int, reply_fd: int, rlimits: dict[str, int], plan_json: str = "") -> list[str]:
    """A worker started from scratch: it reads requests on request_fd, answers on reply_fd.
    plan_json (Landlock layer): the plan the worker applies to itself, under an init that only reaps."""
    return [*python_argv(kit), str(request_fd), str(reply_fd), json.dumps(rlimits), *([plan_json] if plan_json else [])]


def template_argv(kit: str, control_fd: int) -> list[str]:
    """A slot's worker template, serving fork requests on control_fd."""
    return [*python_argv(kit), "--template", str(control_fd)]


def kit_files(*, confine: bool) -> list[tuple[str, str]]:
    """(host path, path inside the kit folder) of what a worker reads of the kit."""
    files = [(str(REPO_ROOT / package), package) for package in STUDENT_PACKAGES]
    files.append((str(WORKER_SCRIPT), "worker.py"))
    names = WORKER_SIDE + (CONFINE_SIDE if confine else ())
    files += [(str(PACKAGE_DIR / name), f"sandbox/{name}") for name in names]
    return files


# -- what a worker may read of the host -------------------------------------------------------------


def runtime_prefixes() -> list[str]:
    paths = {sys.prefix, sys.base_prefix, os.path.realpath(sys.executable).rsplit("/bin/", 1)[0]}
    return sorted(os.path.realpath(p) for p in paths if os.path.isdir(p))


def contains(parent: str, child: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def check_runtime(forbidden: tuple[str, ...], prefixes: list[str] | None = None) -> list[str]:
    """The runtime's prefixes; refuses one that holds the kit or a forbidden folder (the worker
    would see it)."""
    prefixes = runtime_prefixes() if prefixes is None else prefixes
    for source in prefixes:
        for secret in (str(REPO_ROOT), *forbidden):
            if contains(source, secret):
                raise SandboxUnavailable(
                    f"the Python environment {source} contains {secret}: the worker would see it. "
                    "Put the virtual environment outside the kit and the submission/grades folders."
                )
    return prefixes


def system_ops() -> list[Op]:
    """/usr without /usr/local, the /bin and /lib folders or links, a few /etc files, CPU topology."""
    ops: list[Op] = [RoBind("/usr", "/usr")]
    if os.path.isdir("/usr/local"):
        # Site installs are hidden (only the runtime's own prefix comes back); the empty tmpfs
        # that hides them is made read-only at the end, so no worker can park files there.
        ops.append(Tmpfs("/usr/local"))
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            ops.append(Symlink(os.readlink(path), path))
        elif os.path.isdir(path):
            ops.append(RoBind(path, path))
    ops += [RoBind(f"/etc/{name}", f"/etc/{name}", optional=True) for name in ETC_ALLOW]
    ops.append(RoBind("/sys/devices/system/cpu", "/sys/devices/system/cpu", optional=True))  # CPU count for torch
    return ops


def bubblewrap_plan(limits: Limits, *, forbidden: tuple[str, ...] = (), template: bool = False) -> MountPlan:
    """The allow-list view of one worker (or, template=True, of a slot's template)."""
    ops = system_ops()
    ops += [RoBind(prefix, prefix) for prefix in check_runtime(forbidden)]
    ops += [RoBind(source, f"{SANDBOX_KIT}/{inside}") for source, inside in kit_files(confine=False)]
    ops += [
        GeneratedFile("/etc/passwd", f"student:x:{SANDBOX_UID}:{SANDBOX_UID}:student:{SANDBOX_SCRATCH}:/bin/sh\n"),
        GeneratedFile("/etc/group", f"student:x:{SANDBOX_UID}:\n"),
        GeneratedFile("/etc/hostname", "sandbox\n"),
        Proc("/proc"),
        Dev("/dev"),
        Tmpfs("/dev/shm", SHM_MB * 2**20),
        Tmpfs(SANDBOX_SCRATCH, limits.scratch_mb * 2**20, "0700"),
        Symlink(SANDBOX_SCRATCH, "/tmp"),
        # Every writable mount is fresh per worker and size-capped (/scratch, /dev/shm; a forked
        # worker mounts its own over the template's): bwrap's /dev tmpfs and the /usr/local cover
        # are shared by every worker forked from one template, so they must be read-only.
        RemountRo("/dev"),
    ]
    if os.path.isdir("/usr/local"):
        ops.append(RemountRo("/usr/local"))
    ops.append(RemountRo("/"))
    env = tuple(worker_environment(SANDBOX_SCRATCH).items())
    return MountPlan(tuple(ops), env, keep_caps=template)
