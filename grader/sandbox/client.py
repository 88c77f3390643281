"""``Worker``: one sandboxed worker process executing one student's cells, seen from the grader."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import protocol
from .caps import Caps, kill_tree, make_caps
from .errors import ProbeFailed, WorkerError, WorkerOutOfMemory, WorkerTimeout
from .host import HostSandbox, require_sandbox
from .landlock_layer import LandlockLaunch, copy_kit
from .launcher import Launch, launch_for
from .limits import Limits, rlimits
from .output import OutputDrain
from .plan import worker_argv, worker_environment
from .proctree import tree_cpu_seconds
from .protections import BASE_PROTECTIONS
from .template import ForkedProcess, WorkerTemplate, kill_group_and_leader, worker_template

MAX_ERROR_CHARS = 2000  # a worker's error text, cut by the trusted side before anything else reads it
MAX_REPLY_BYTES = protocol.MAX_REPLY_BYTES

# A worker's start: build(request_read, reply_write) -> (argv, preexec_fn) for Popen.
Build = Callable[[int, int], tuple[list[str], Callable[[], None]]]


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
    ) -> None:
        self.limits = limits or Limits()
        self.host = host  # None: what host_sandbox() found (tests pass another, e.g. the watchdog caps)
        self.slot = slot
        self.sandbox = sandbox
        self.forbidden = tuple(str(Path(p).resolve()) for p in forbidden)
        self.process: subprocess.Popen[bytes] | ForkedProcess | None = None
        known = host if host is not None else (require_sandbox() if sandbox else None)
        self.layer = known.layer if known is not None else "none"
        self.protections = [*BASE_PROTECTIONS, *(p.name for p in known.protections())] if known else [*BASE_PROTECTIONS]
        self._next_id = 0
        self._launch: Launch | None = None  # the from-scratch start's sandbox
        self._caps: Caps | None = None
        self._template: WorkerTemplate | None = None
        self._scratch: Path | None = None
        self.peak_memory_bytes: int | None = None
        self.cpu_seconds = 0.0  # CPU time of the worker tree, read when it is stopped
        self.out_of_memory = False
        self.started_from_template = False
        self.largest_reply_bytes = 0

    # -- lifecycle -----------------------------------------------------------------
    def _rlimits(self) -> dict[str, int]:
        # RLIMIT_NPROC only where the worker's uid is its own (a user namespace, or a spare uid).
        own_uid = self.sandbox and (self.layer == "bubblewrap" or (self.host or require_sandbox()).as_root)
        return rlimits(self.limits, processes=own_uid)

    def start(self) -> None:
        if not self.sandbox:
            self._start_unsafe()
            return
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
                print(f"segkit: a forked worker failed ({exc}); starting one from scratch\n{output}", file=sys.stderr)
        self._start_from_scratch(host)

    def _start_from_scratch(self, host: HostSandbox) -> None:
        self._launch = launch = launch_for(host, self.limits, slot=self.slot, forbidden=self.forbidden)
        launch.prepare()
        self._caps = caps = launch.caps
        landlock = launch if host.layer == "landlock" else None
        assert landlock is None or isinstance(landlock, LandlockLaunch)  # launch_for's choice for this layer

        plan = landlock.worker_plan(str(landlock.scratch_path)).to_json() if landlock is not None else ""

        def build(request_read: int, reply_write: int) -> tuple[list[str], Callable[[], None]]:
            argv = worker_argv(launch.kit, request_read, reply_write, self._rlimits(), plan)
            return launch.command(argv)

        process = self._spawn(build, launch.env, launch.cwd)
        scratch = str(landlock.scratch_path) if landlock is not None else None
        caps.watch(process.pid, scratch=scratch)
        self._await_ready()

    def _start_unsafe(self) -> None:
        """--unsafe-no-sandbox: a copy of the worker side of the kit and a scratch folder, nothing else."""
        self._scratch = Path(tempfile.mkdtemp(prefix="segkit-unsafe-"))
        kit = self._scratch / "kit"
        copy_kit(kit, confine_side=False)

        def build(request_read: int, reply_write: int) -> tuple[list[str], Callable[[], None]]:
            return worker_argv(str(kit), request_read, reply_write, self._rlimits()), _set_pdeathsig

        self._spawn(build, worker_environment(str(self._scratch)), str(self._scratch))
        self._await_ready()

    def _spawn(self, build: Build, env: dict[str, str] | None, cwd: str | None) -> subprocess.Popen[bytes]:
        """Start the worker build(request_read, reply_write) describes, with its pipes."""
        request_read, self._request_write = os.pipe()
        self._reply_read, reply_write = os.pipe()
        output_read, output_write = os.pipe()
        try:
            # Plain fd numbers survive bwrap (it keeps inherited descriptors) and the uid drop.
            command, preexec = build(request_read, reply_write)
            self.process = process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output_write,
                stderr=output_write,
                pass_fds=(request_read, reply_write),
                start_new_session=True,
                preexec_fn=preexec,
                close_fds=True,
                env=env,
                cwd=cwd,
            )
        finally:
            for fd in (request_read, reply_write, output_write):
                os.close(fd)
        self._drain = OutputDrain(output_read, self.limits.output_keep_bytes)
        self._drain.start()
        return process

    def _start_forked(self, host: HostSandbox, template: WorkerTemplate) -> None:
        """Fork the worker from this slot's template, move it under its caps, then let it start."""
        self._caps = caps = make_caps(
            host.caps, self.limits, count_processes=host.layer == "landlock" and not host.as_root
        )
        caps.prepare()
        self._template = template
        process, self._request_write, self._reply_read, output_read, self._go = template.fork(
            self._rlimits(), self.limits.scratch_mb, self.limits.startup_timeout
        )
        self.process = process
        self._drain = OutputDrain(output_read, self.limits.output_keep_bytes)
        self._drain.start()
        # The worker's init waits for this before it forks the worker: everything that runs
        # student code starts under the submission's caps.
        try:
            caps.attach(process.pid)
            os.write(self._go, b"g")
        except OSError as exc:
            raise WorkerError(f"a forked worker could not be capped and started: {exc}") from exc
        caps.watch(process.pid, scratch=template.worker_folder)
        self._await_ready()
        self.started_from_template = True

    def _await_ready(self) -> None:
        reply = self._receive(self.limits.startup_timeout)
        if reply.get("op") != "ready":
            raise WorkerError("worker did not start")

    def stop(self) -> None:
        """Kill the worker and everything it started; remove its scratch and caps."""
        if self.process is not None:
            self.cpu_seconds = tree_cpu_seconds(self.process.pid)
            if self.layer == "landlock":
                kill_tree(self.process.pid)
            kill_group_and_leader(self.process)
            self.process.wait()
            if isinstance(self.process, ForkedProcess):
                self.process.close()
                os.close(self._go)
            for fd in (self._request_write, self._reply_read):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._drain.join(timeout=5)
            self.process = None
        if self._template is not None:
            self._template.end_worker()
            self._template = None
        if self._caps is not None:
            self._caps.stop_watching()  # read before release() removes the cgroups
            self.out_of_memory = self.out_of_memory or self._caps.out_of_memory()
            self.peak_memory_bytes = self._caps.peak_memory_bytes() or self.peak_memory_bytes
            self._caps.release()
            self._caps = None
        if self._launch is not None:
            self._launch.cleanup()
            self._launch = None
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
        if self._caps is not None and self._caps.out_of_memory():
            return WorkerOutOfMemory(f"the worker used more than its {self.limits.memory_mb} MB memory cap")
        hit = self._caps.limit_hit() if self._caps is not None else ""
        if hit == "processes":
            return WorkerError(f"the worker started more than its {self.limits.max_processes} processes")
        if hit == "scratch":
            return WorkerError(f"the worker wrote more than its {self.limits.scratch_mb} MB scratch cap")
        if isinstance(self.process, ForkedProcess):
            return WorkerError("the worker process exited")
        return WorkerError(f"the worker process exited (code {code})")

    # -- protocol ------------------------------------------------------------------
    def _send(self, message: dict[str, object]) -> None:
        import torch

        try:
            protocol.write_frame(self._request_write, protocol.encode(message, torch.save))
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError("the worker process has exited") from exc

    def _read_exact(self, n: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        remaining = n
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout("time limit exceeded")
            ready, _, _ = select.select([self._reply_read], [], [], min(left, 1.0))
            if not ready:
                if self._started().poll() is not None:
                    raise self._died()
                continue
            chunk = os.read(self._reply_read, min(remaining, 1 << 20))
            if not chunk:
                try:
                    self._started().wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                raise self._died()
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _started(self) -> subprocess.Popen[bytes] | ForkedProcess:
        assert self.process is not None  # replies are read only from a started worker
        return self.process

    def _receive(self, timeout: float) -> dict[str, Any]:

        import torch

        deadline = time.monotonic() + timeout
        try:
            payload = protocol.read_frame(
                self._reply_read, MAX_REPLY_BYTES, lambda fd, n: self._read_exact(n, deadline)
            )
        except protocol.FrameTooLarge as exc:
            raise WorkerError(f"the worker sent a reply over {MAX_REPLY_BYTES // 2**20} MB") from exc
        assert payload is not None  # _read_exact raises rather than report an end of input
        self.largest_reply_bytes = max(self.largest_reply_bytes, len(payload))
        try:
            reply = protocol.decode(payload, torch.load)
        except Exception as exc:
            raise WorkerError("the worker sent something that is not plain data") from exc
        if type(reply) is not dict:
            raise WorkerError("the worker sent a malformed reply")
        return reply

    def exec_cell(self, grade_id: str, source: str, timeout: float | None = None) -> dict[str, str]:
        """Run one cell. Returns {"status": "ok"|"error", "error": str}; raises WorkerError if the worker died."""
        self._send({"op": "exec", "grade_id": grade_id, "source": source})
        reply = self._receive(timeout or self.limits.cell_timeout)
        if reply.get("op") != "exec" or reply.get("grade_id") != grade_id:
            raise WorkerError("the worker answered out of turn")
        return {"status": "ok" if reply.get("status") == "ok" else "error", "error": worker_text(reply.get("error"))}

    def probe(
        self,
        source: str,
        name: str,
        args: tuple[object, ...] = (),
        kwargs: dict[str, object] | None = None,
        timeout: float | None = None,
    ) -> Any:
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
            raise ProbeFailed(worker_text(reply.get("error", "error")))
        return reply.get("value")


def worker_text(value: object) -> str:
    """A text field of a worker's reply, as the trusted side keeps it: a string, capped."""
    text = value if type(value) is str else ""
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + f" ... [{len(text) - MAX_ERROR_CHARS} more characters not shown]"
    return text


def _set_pdeathsig() -> None:
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
