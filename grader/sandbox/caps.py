"""Caps over all of a worker's processes, behind one interface: cgroup v1, cgroup v2 (as root), a
systemd user scope (cgroup v2 without root), or a watchdog thread in the grader.

    caps = make_caps(host.caps, limits)
    caps.prepare()              # cgroups made (nothing for the others)
    argv = caps.wrap(argv)      # systemd-run around a from-scratch start
    ... start the worker, then caps.attach(pid) or, in its child, caps.join_self() ...
    caps.watch(pid)             # the watchdog starts polling
    caps.release()              # stop watching, kill what is left, remove the cgroups
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from .limits import Limits
from .proctree import folder_bytes, host_devices, process_table, tree_memory_bytes, tree_pids

CGROUP_ROOT = Path("/sys/fs/cgroup")
WATCHDOG_INTERVAL_S = 0.05
FOLDER_EVERY = 20  # the watchdog sizes a scratch folder on disk every this many polls (it walks it)


def read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


# -- what the host offers ---------------------------------------------------------------------


def cgroup_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def cgroup_v1_writable(controller: str) -> bool:
    base = CGROUP_ROOT / controller
    if not base.is_dir() or cgroup_v2():
        return False
    probe = base / f"segkit-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
        return True
    except OSError:
        return False


def cgroup_v2_parent() -> Path | None:
    """As root on cgroup v2: a parent group with the memory and pids controllers for leaf groups."""
    if not cgroup_v2():
        return None
    parent = CGROUP_ROOT / "segkit"
    try:
        if not {"memory", "pids"} <= set((read(CGROUP_ROOT / "cgroup.subtree_control") or "").split()):
            (CGROUP_ROOT / "cgroup.subtree_control").write_text("+memory +pids")
        parent.mkdir(exist_ok=True)
        if not {"memory", "pids"} <= set((read(parent / "cgroup.subtree_control") or "").split()):
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
        return parent
    except OSError:
        return None


def systemd_user_scope() -> bool:
    """cgroup v2 without root: can `systemd-run --user --scope` cap memory and tasks here?"""
    if not cgroup_v2() or shutil.which("systemd-run") is None:
        return False
    uid = os.getuid()
    delegated = CGROUP_ROOT / "user.slice" / f"user-{uid}.slice" / f"user@{uid}.service" / "cgroup.controllers"
    if not {"memory", "pids"} <= set((read(delegated) or "").split()):
        return False
    command = ["systemd-run", "--user", "--scope", "--quiet", "-p", "MemoryMax=64M", "-p", "TasksMax=16", "true"]
    try:
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def detect(as_root: bool) -> str:
    """The strongest caps this host gives: "cgroup-v1" | "cgroup-v2" | "systemd" | "watchdog"."""
    if as_root and cgroup_v1_writable("memory") and cgroup_v1_writable("pids"):
        return "cgroup-v1"
    if as_root and cgroup_v2_parent() is not None:
        return "cgroup-v2"
    if not as_root and systemd_user_scope():
        return "systemd"
    return "watchdog"


# -- the interface ------------------------------------------------------------------------------


class Caps:
    """No caps beyond the rlimits; the subclasses add theirs."""

    kind = "none"

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.cgroups: list[Path] = []
        self._scratch_watch: MemoryWatchdog | None = None
        self._scratch_verdict = ""

    def prepare(self) -> None:
        """Make what the caps need before the worker starts (cgroups)."""

    def wrap(self, argv: list[str]) -> list[str]:
        """The command line that starts `argv` under the caps (from-scratch starts)."""
        return argv

    def procs_files(self) -> list[str]:
        """cgroup.procs files a starting process writes "0" to, to join before anything runs."""
        return [str(group / "cgroup.procs") for group in self.cgroups]

    def attach(self, pid: int) -> None:
        """Put `pid` under the caps (a worker forked by a template, before it may go on)."""
        for group in self.cgroups:
            (group / "cgroup.procs").write_text(str(pid))

    def watch(self, pid: int, scratch: str | None = None) -> None:
        """Start watching the tree under `pid`: with `scratch` (a Landlock worker's folder on the
        host's disk, which no tmpfs size caps) a thread kills the tree when it holds more than the
        scratch cap; the watchdog also counts it as memory."""
        if scratch is not None:
            self._scratch_watch = MemoryWatchdog(
                pid, None, scratch=scratch, scratch_limit=self.limits.scratch_mb * 2**20
            )
            self._scratch_watch.start()

    def stop_watching(self) -> None:
        """Stop the watchdog (its peak and verdict stay readable)."""
        if self._scratch_watch is not None:
            self._scratch_watch.stop()
            self._scratch_verdict = self._scratch_watch.verdict
            self._scratch_watch = None

    def peak_memory_bytes(self) -> int | None:
        return None

    def out_of_memory(self) -> bool:
        return False

    def limit_hit(self) -> str:
        """Which cap other than memory the grader enforced by killing the tree ("processes",
        "scratch") or ""."""
        return self._scratch_watch.verdict if self._scratch_watch is not None else self._scratch_verdict

    def kill_everything(self) -> None:
        """Kill every process left in the worker's cgroups (its sandbox normally did it already)."""
        for group in self.cgroups:
            for line in (read(group / "cgroup.procs") or "").split():
                try:
                    os.kill(int(line), signal.SIGKILL)
                except (ProcessLookupError, PermissionError, ValueError):
                    pass

    def release(self) -> None:
        """Stop watching, kill what is left, remove the cgroups."""
        self.stop_watching()
        self.kill_everything()
        for group in self.cgroups:
            for _ in range(100):  # the kernel frees the group a moment after its last process exits
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
        self.cgroups = []


class CgroupCaps(Caps):
    """cgroup v1 (memory and pids hierarchies) or v2 (a leaf under /sys/fs/cgroup/segkit), as root."""

    def __init__(self, limits: Limits, version: int) -> None:
        super().__init__(limits)
        self.version = version
        self.kind = f"cgroup-v{version}"

    def prepare(self) -> None:
        name = f"segkit-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        memory = str(self.limits.memory_mb * 2**20)
        processes = str(self.limits.max_processes)
        if self.version == 1:
            for controller, settings in (
                ("memory", {"memory.limit_in_bytes": memory}),
                ("pids", {"pids.max": processes}),
            ):
                group = CGROUP_ROOT / controller / name
                group.mkdir()
                self.cgroups.append(group)
                for key, value in settings.items():
                    (group / key).write_text(value)
            return
        group = CGROUP_ROOT / "segkit" / name
        group.mkdir()
        self.cgroups.append(group)
        (group / "memory.max").write_text(memory)
        if (group / "memory.swap.max").exists():
            (group / "memory.swap.max").write_text("0")
        (group / "pids.max").write_text(processes)

    def peak_memory_bytes(self) -> int | None:
        for group in self.cgroups:
            for name in ("memory.max_usage_in_bytes", "memory.peak"):
                value = read(group / name)
                if value and value.isdigit():
                    return int(value)
        return None

    def out_of_memory(self) -> bool:
        for group in self.cgroups:
            events = read(group / "memory.events") or ""
            if any(line.split()[0] == "oom_kill" and line.split()[1] != "0" for line in events.splitlines()):
                return True
            failcnt = read(group / "memory.failcnt")
            if failcnt and failcnt != "0":
                return True
        return False


class SystemdCaps(Caps):
    """A transient systemd user scope around a from-scratch start (cgroup v2 without root)."""

    kind = "systemd"

    def wrap(self, argv: list[str]) -> list[str]:
        limits = self.limits
        return [
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


class WatchdogCaps(Caps):
    """No cgroup: a thread of the grader polls the worker's tree (resident memory, tmpfs and scratch
    bytes, and with count_processes its number of processes) and kills the tree over a cap."""

    kind = "watchdog"

    def __init__(self, limits: Limits, *, count_processes: bool = False) -> None:
        super().__init__(limits)
        self.count_processes = count_processes
        self._watchdog: MemoryWatchdog | None = None
        self._peak: int | None = None
        self._fired = False
        self._verdict = ""

    def watch(self, pid: int, scratch: str | None = None) -> None:
        """Memory (resident, tmpfs and scratch), scratch size and, as the grading uid, process count."""
        self._watchdog = MemoryWatchdog(
            pid,
            self.limits.memory_mb * 2**20,
            scratch=scratch,
            scratch_limit=self.limits.scratch_mb * 2**20,
            max_processes=self.limits.max_processes if self.count_processes else None,
        )
        self._watchdog.start()

    def stop_watching(self) -> None:
        super().stop_watching()
        if self._watchdog is not None:
            self._watchdog.stop()
            self._peak = self._watchdog.peak
            self._fired = self._fired or self._watchdog.fired
            self._verdict = self._verdict or self._watchdog.verdict
            self._watchdog = None

    def limit_hit(self) -> str:
        verdict = self._watchdog.verdict if self._watchdog is not None else self._verdict
        return "" if verdict == "memory" else verdict

    def peak_memory_bytes(self) -> int | None:
        return self._watchdog.peak if self._watchdog is not None else self._peak

    def out_of_memory(self) -> bool:
        return self._fired or (self._watchdog is not None and self._watchdog.fired)

    def release(self) -> None:
        self.stop_watching()
        super().release()


def make_caps(kind: str, limits: Limits, *, count_processes: bool = False) -> Caps:
    if kind == "cgroup-v1":
        return CgroupCaps(limits, 1)
    if kind == "cgroup-v2":
        return CgroupCaps(limits, 2)
    if kind == "systemd":
        return SystemdCaps(limits)
    if kind == "watchdog":
        return WatchdogCaps(limits, count_processes=count_processes)
    return Caps(limits)


class MemoryWatchdog(threading.Thread):
    """Kills the worker's whole process tree when its resident memory plus its tmpfs (or scratch
    folder) contents pass limit_bytes (None: not watched), its scratch folder passes scratch_limit,
    or, given max_processes, when it runs more processes."""

    def __init__(
        self,
        root_pid: int,
        limit_bytes: int | None,
        *,
        scratch: str | None = None,
        scratch_limit: int | None = None,
        max_processes: int | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.root_pid, self.limit = root_pid, limit_bytes
        self.scratch, self.scratch_limit, self.max_processes = scratch, scratch_limit, max_processes
        self.peak, self.fired = 0, False
        self.verdict = ""  # "" | "memory" | "processes" | "scratch": which cap killed the tree
        self._halt = threading.Event()  # not _stop: that is a method of Thread
        self._host_devices = host_devices()

    def run(self) -> None:
        polls, scratch_bytes = 0, 0
        while not self._halt.wait(WATCHDOG_INTERVAL_S):
            if self.scratch and polls % FOLDER_EVERY == 0:
                scratch_bytes = folder_bytes(self.scratch)
            polls += 1
            if self.max_processes is not None and self._processes() > self.max_processes:
                self.verdict = "processes"  # first: forked children's shared pages inflate the memory sum
            elif self.scratch_limit is not None and scratch_bytes > self.scratch_limit:
                self.verdict = "scratch"
            elif self.limit is not None:
                used = tree_memory_bytes(self.root_pid, self._host_devices) + scratch_bytes
                self.peak = max(self.peak, used)
                self.fired = used > self.limit
                self.verdict = "memory" if self.fired else ""
            if self.verdict:
                kill_tree(self.root_pid)
                return

    def _processes(self) -> int:
        return len(tree_pids(self.root_pid, process_table()))

    def stop(self) -> None:
        self._halt.set()


def kill_tree(root_pid: int, *, keep_root: bool = False) -> None:
    """SIGKILL every descendant of `root_pid`, again until none is left (a tree that forks while it
    is killed; orphans reparent to the root where it is a child subreaper), then, unless keep_root,
    its process group and the root itself. The root goes last: killed first, its children would
    reparent out of the tree before they were found."""
    for _ in range(50):
        pids = [pid for pid in tree_pids(root_pid, process_table()) if pid != root_pid]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    if keep_root:
        return
    kills: tuple[Callable[[], None], ...] = (
        lambda: os.killpg(root_pid, signal.SIGKILL),
        lambda: os.kill(root_pid, signal.SIGKILL),
    )
    for kill in kills:
        try:
            kill()  # a pid-namespace init takes the rest with it
        except (ProcessLookupError, PermissionError):
            pass
