"""Trusted side of the sandbox: starts one worker process per submission and talks to it.

Protections, each used when the host offers it and reported by name in every result:

- ``process``      student code runs in a separate process, never in the grading process
- ``timeouts``     wall-clock limits per cell, per probe and per submission (parent-enforced)
- ``rlimits``      CPU seconds, address space, file size, open files, core dumps off
- ``namespaces``   fresh network (no interfaces up), mount and pid namespaces (``unshare``)
- ``hidden_files`` repository, solutions, grader, submissions, grades, home and /tmp covered
                   by empty tmpfs mounts inside the worker's mount namespace
- ``user``         worker runs as an unprivileged uid of its own (one per parallel slot),
                   so it cannot undo the mounts and RLIMIT_NPROC applies
- ``cgroup_memory`` / ``cgroup_pids``  kernel-enforced memory and process-count caps
- ``output_cap``   stdout/stderr drained by the parent; only head and tail kept

All replies from the worker are decoded with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import ctypes
import fcntl
import io
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKER_SCRIPT = Path(__file__).with_name("worker.py")
LAUNCHER_SCRIPT = Path(__file__).with_name("launcher.py")
STUDENT_PACKAGES = ("starter",)  # what a student notebook may import from the kit
BASE_UID = 61000  # workers take a free uid in [BASE_UID, BASE_UID + UID_RANGE): unused by real users
UID_RANGE = 1000
UID_LOCK_DIR = Path("/run/segkit-uids") if Path("/run").is_dir() else Path("/tmp/segkit-uids")
MAX_REPLY_BYTES = 256 * 1024 * 1024
CGROUP_V1 = Path("/sys/fs/cgroup")

PROTECTION_TEXT = {
    "process": "student code ran in a separate worker process",
    "timeouts": "wall-clock time limits per cell, per check and per submission",
    "rlimits": "CPU-time, address-space, file-size and open-file limits",
    "namespaces": "no network, private mounts and process tree (Linux namespaces)",
    "hidden_files": "solutions, grader, other submissions and grades hidden from the worker",
    "user": "worker ran as an unprivileged user of its own",
    "cgroup_memory": "kernel memory cap (cgroup)",
    "cgroup_pids": "kernel process-count cap (cgroup)",
    "output_cap": "printed output capped",
}


class WorkerError(RuntimeError):
    """The worker died, hung or answered with something that is not plain data."""


class WorkerTimeout(WorkerError):
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
    open_files: int = 256
    output_keep_bytes: int = 16 * 1024


def _can_run(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _cgroup_writable(controller: str) -> bool:
    base = CGROUP_V1 / controller
    if not base.is_dir():
        return False
    probe = base / f"segkit-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
        return True
    except OSError:
        return False


def _reachable_by_others(path: str) -> bool:
    """Can an unprivileged uid traverse every folder above `path` and read it?"""
    path = os.path.realpath(path)
    parts = Path(path).parents
    return all(os.stat(p).st_mode & 0o001 for p in parts) and bool(os.stat(path).st_mode & 0o004)


@lru_cache(maxsize=1)
def host_capabilities() -> dict[str, bool]:
    """Which protections this host offers (checked once per process)."""
    is_root = os.geteuid() == 0
    namespaces = is_root and shutil.which("unshare") is not None and _can_run(
        ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "true"])
    # Without a mount namespace the worker's uid must reach Python where it is (e.g. not under
    # a 0700 /root); otherwise it could not even start, so the uid drop is not offered.
    python_reachable = all(_reachable_by_others(p) for p in (sys.executable, sys.prefix, sys.base_prefix))
    return {
        "namespaces": namespaces,
        "hidden_files": namespaces,
        "user": is_root and (namespaces or python_reachable),
        "cgroup_memory": is_root and _cgroup_writable("memory"),
        "cgroup_pids": is_root and _cgroup_writable("pids"),
    }


def active_protections(*, sandbox: bool = True) -> list[str]:
    names = ["process", "timeouts", "rlimits", "output_cap"]
    if sandbox:
        names += [name for name, ok in host_capabilities().items() if ok]
    return names


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
            self.tail = (self.tail + chunk)[-self.keep:]
        os.close(self.fd)

    def text(self) -> str:
        if self.total <= 2 * self.keep:
            data = (self.head + self.tail[len(self.head) - self.total:]) if self.total > len(self.head) else self.head
        else:
            data = self.head + f"\n... [{self.total - 2 * self.keep} bytes of output dropped] ...\n".encode() + self.tail
        return data.decode("utf-8", "replace")


def _set_pdeathsig():
    # The worker must die with the grading process that started it, whatever kills that.
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Worker:
    """One sandboxed worker process executing one student's cells.

    Inputs:
    - slot: parallel slot number (picks the worker's uid), unique among concurrent workers
    - hide: extra folders to hide (submissions root, output folder)
    """

    def __init__(self, *, slot: int = 0, limits: Limits | None = None, hide: tuple[str, ...] = (),
                 sandbox: bool = True):
        self.limits = limits or Limits()
        self.slot = slot
        self.sandbox = sandbox
        self.hide = tuple(str(Path(p).resolve()) for p in hide)
        self.process: subprocess.Popen | None = None
        self.protections = active_protections(sandbox=sandbox)
        self._next_id = 0
        self._run_dir: Path | None = None
        self._cgroups: list[Path] = []
        self.peak_memory_bytes: int | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self):
        caps = host_capabilities() if self.sandbox else {}
        self._run_dir = Path(tempfile.mkdtemp(prefix="segkit-run-"))
        scratch = self._run_dir / "scratch"
        scratch.mkdir()
        shutil.copy(WORKER_SCRIPT, scratch / "worker.py")
        for package in STUDENT_PACKAGES:
            shutil.copytree(REPO_ROOT / package, scratch / package,
                            ignore=shutil.ignore_patterns("__pycache__"))
        uid = self._claim_uid() if caps.get("user") else None
        if uid is not None:
            os.chmod(self._run_dir, 0o711)
            for path in [scratch, *scratch.rglob("*")]:
                os.chown(path, uid, uid)
            os.chmod(scratch, 0o700)

        cgroup_procs = self._make_cgroups(caps)
        limits = self.limits
        memory = limits.memory_mb * 1024 * 1024
        rlimits = {
            "RLIMIT_CPU": limits.cpu_seconds,
            # CUDA builds of torch reserve ~3.5 GB of address space at import; the cgroup
            # (when present) is the real memory cap, this is the backstop.
            "RLIMIT_AS": memory + 8 * 1024 ** 3,
            "RLIMIT_FSIZE": limits.file_size_mb * 1024 * 1024,
            "RLIMIT_NOFILE": limits.open_files,
            "RLIMIT_CORE": 0,
        }
        if uid is not None:
            rlimits["RLIMIT_NPROC"] = limits.max_processes
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch), "USER": "student",
            "LOGNAME": "student", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "CUDA_VISIBLE_DEVICES": "", "SEGKIT_FAST": "1", "SEGKIT_GRADING": "1",
            "TMPDIR": str(scratch), "LANG": "C.UTF-8", "MALLOC_ARENA_MAX": "2",
        }
        hide = {str(REPO_ROOT), str(REPO_ROOT.parent), str(Path.home()), "/tmp", "/var/tmp", "/dev/shm",
                *self.hide}
        hide -= {"/", "/usr", "/bin", "/lib", "/lib64", "/etc", "/proc", "/sys", "/dev"}
        config = {
            "mounts": bool(caps.get("namespaces")),
            "hide": sorted(hide),
            "expose_ro": sorted({sys.prefix, sys.base_prefix, os.path.realpath(sys.executable).rsplit("/bin/", 1)[0]}),
            "scratch": str(scratch),
            "uid": uid, "gid": uid,
            "rlimits": rlimits,
            "cgroup_procs": [str(p) for p in cgroup_procs],
            "env": env,
        }
        config_path = self._run_dir / "launch.json"
        config_path.write_text(json.dumps(config))
        os.chmod(config_path, 0o600)

        request_read, self._request_write = os.pipe()
        self._reply_read, reply_write = os.pipe()
        output_read, output_write = os.pipe()
        worker_cmd = [sys.executable, "-I", "-u", "-B", str(scratch / "worker.py"), str(request_read), str(reply_write)]
        command = [sys.executable, "-I", "-S", str(LAUNCHER_SCRIPT), str(config_path), *worker_cmd]
        if caps.get("namespaces"):
            command = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", *command]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output_write, stderr=output_write,
            pass_fds=(request_read, reply_write), start_new_session=True, preexec_fn=_set_pdeathsig,
            close_fds=True,
        )
        for fd in (request_read, reply_write, output_write):
            os.close(fd)
        self._drain = _OutputDrain(output_read, limits.output_keep_bytes)
        self._drain.start()
        reply = self._receive(limits.startup_timeout)
        if reply.get("op") != "ready":
            raise WorkerError("worker did not start")

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

    def _make_cgroups(self, caps) -> list[Path]:
        procs = []
        name = f"segkit-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if caps.get("cgroup_memory"):
            group = CGROUP_V1 / "memory" / name
            group.mkdir()
            (group / "memory.limit_in_bytes").write_text(str(self.limits.memory_mb * 1024 * 1024))
            self._cgroups.append(group)
            procs.append(group / "cgroup.procs")
        if caps.get("cgroup_pids"):
            group = CGROUP_V1 / "pids" / name
            group.mkdir()
            (group / "pids.max").write_text(str(self.limits.max_processes))
            self._cgroups.append(group)
            procs.append(group / "cgroup.procs")
        return procs

    def stop(self):
        """Kill the worker and everything it started; remove its scratch folder."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.process.kill()
            except ProcessLookupError:
                pass
            self.process.wait()
            for fd in (self._request_write, self._reply_read):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._drain.join(timeout=5)
            self.process = None
        for group in self._cgroups:
            peak = group / "memory.max_usage_in_bytes"
            if peak.exists():
                self.peak_memory_bytes = int(peak.read_text())
            self._remove_cgroup(group)
        self._cgroups = []
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
        if getattr(self, "_uid_lock", None) is not None:
            self._uid_lock.close()  # releases the flock: the uid is free again
            self._uid_lock = None

    @staticmethod
    def _remove_cgroup(group: Path):
        for _ in range(50):  # the kernel frees the group a moment after its last process exits
            try:
                group.rmdir()
                return
            except OSError:
                time.sleep(0.05)

    def output(self) -> str:
        return self._drain.text() if hasattr(self, "_drain") else ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- protocol ------------------------------------------------------------------
    def _send(self, message: dict):
        buffer = io.BytesIO()
        torch.save(message, buffer)
        payload = buffer.getvalue()
        try:
            os.write(self._request_write, struct.pack(">Q", len(payload)))
            view = memoryview(payload)
            while view:
                view = view[os.write(self._request_write, view):]
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
                    raise WorkerError(f"the worker process exited (code {self.process.returncode})")
                continue
            chunk = os.read(self._reply_read, min(remaining, 1 << 20))
            if not chunk:
                self.process.wait(timeout=5) if self.process.poll() is None else None
                raise WorkerError(f"the worker process exited (code {self.process.poll()})")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _receive(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        (length,) = struct.unpack(">Q", self._read_exact(8, deadline))
        if length > MAX_REPLY_BYTES:
            raise WorkerError("the worker sent an oversized reply")
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
        return {"status": "ok" if reply.get("status") == "ok" else "error", "error": str(reply.get("error", ""))}

    def probe(self, source: str, name: str, args: tuple = (), kwargs: dict | None = None,
              timeout: float | None = None):
        """Run a probe function `name(namespace, *args, **kwargs)` in the worker; return its plain result."""
        self._next_id += 1
        request_id = self._next_id
        self._send({"op": "probe", "id": request_id, "source": source, "name": name,
                    "args": list(args), "kwargs": dict(kwargs or {})})
        reply = self._receive(timeout or self.limits.probe_timeout)
        if reply.get("op") != "probe" or reply.get("id") != request_id:
            raise WorkerError("the worker answered out of turn")
        if reply.get("status") != "ok":
            raise ProbeFailed(str(reply.get("error", "error")))
        return reply.get("value")


class ProbeFailed(Exception):
    """The student's code raised while a check called it (message is student-facing)."""
