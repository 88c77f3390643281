"""The worker template client: one pre-imported template per grading slot, forked once per submission.

Importing torch and torchvision costs a worker more CPU than most submissions' checks, so each
slot starts a template once, in the same sandbox as a worker (allow-list, uid, caps on its own),
and forks a fresh worker from it per submission (``worker.py --template``; worker.py says what
each worker gets). The template never runs student code. The grader learns each worker's host pid
from its hello message's credentials, caps it, and only then lets it go on.

bubblewrap layer: the worker is the init of fresh namespaces (mount, pid, net, ipc, uts) with its
own /scratch, /dev/shm and /proc. Landlock layer: the worker confines itself to its own folder of
the template's scratch root (``w<n>``, removed when it ends), and as a child subreaper keeps every
process it starts in its tree, which the grader kills whole.
"""

from __future__ import annotations

import atexit
import json
import multiprocessing.util
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from .caps import kill_tree
from .errors import WorkerError
from .landlock_layer import LandlockLaunch
from .launcher import Launch, launch_for
from .limits import SHM_MB, Limits
from .output import OutputDrain
from .plan import template_argv
from .proctree import tree_cpu_seconds

if TYPE_CHECKING:
    from .host import HostSandbox

ENV_TEMPLATE = "SEGKIT_WORKER_TEMPLATE"  # "0": start every worker from scratch instead of forking a template


def read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def kill_group_and_leader(process: subprocess.Popen[bytes] | ForkedProcess) -> None:
    """SIGKILL `process`'s process group (a sandbox's pid-namespace init takes the rest with it), then
    the process itself in case it leads no group."""
    kills: tuple[Callable[[], None], ...] = (lambda: os.killpg(process.pid, signal.SIGKILL), process.kill)
    for kill in kills:
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


class ForkedProcess:
    """A worker forked by the template: not a child of this process, so it is watched and
    signalled through a pidfd (which cannot name another process after a pid is reused)."""

    def __init__(self, pid: int) -> None:
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
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
            self.returncode = -1
        return self.returncode

    def kill(self) -> None:
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        os.close(self._pidfd)


class WorkerTemplate:
    """A slot's pre-imported worker template (``worker.py --template``), in this host's layer."""

    def __init__(self, host: HostSandbox, slot: int, forbidden: tuple[str, ...], keep_output: int) -> None:
        self.host, self.slot, self.forbidden = host, slot, forbidden
        self._keep_output = keep_output
        self._launch: Launch | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._drain: OutputDrain | None = None
        self._forks = 0
        self.worker_folder: str | None = None  # Landlock layer: the current worker's folder
        self.cpu_seconds = 0.0  # the template's own start-up (imports), once per slot

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float) -> None:
        self._launch = launch = launch_for(self.host, Limits(), slot=self.slot, forbidden=self.forbidden, template=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        output_read, output_write = os.pipe()
        try:
            launch.prepare()
            command, preexec = launch.command(template_argv(launch.kit, theirs.fileno()))
            self._process = process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output_write,
                stderr=output_write,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                preexec_fn=preexec,
                close_fds=True,
                env=launch.env,
                cwd=launch.cwd,
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
        self._drain = OutputDrain(output_read, self._keep_output)
        self._drain.start()
        answer = self._answer(timeout)
        self.cpu_seconds = tree_cpu_seconds(process.pid)
        if not answer.get("ready"):
            reason = answer.get("error") or "it did not start"
            self.stop()
            raise WorkerError(f"the worker template refused: {reason}")

    def _answer(self, timeout: float) -> dict[str, object]:
        control = self._control
        assert control is not None  # start() connected it
        ready, _, _ = select.select([control], [], [], timeout)
        message = control.recv(1 << 16) if ready else b""
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

    def _request(self, rlimits: dict[str, int], scratch_mb: int) -> dict[str, object]:
        request: dict[str, object] = {
            "limits": rlimits,
            "scratch_mb": scratch_mb,
            "shm_mb": SHM_MB,
            "layer": self.host.layer,
        }
        if self.host.layer == "landlock":
            launch = self._launch
            assert isinstance(launch, LandlockLaunch)  # launch_for's choice for this layer
            self._forks += 1
            self.worker_folder = launch.make_worker_folder(f"w{self._forks}")
            request["folder"] = self.worker_folder
            request["plan"] = launch.worker_plan(self.worker_folder).to_json()
        return request

    def fork(
        self, rlimits: dict[str, int], scratch_mb: int, timeout: float
    ) -> tuple[ForkedProcess, int, int, int, int]:
        """A fresh worker: (handle of its init, request write fd, reply read fd, output read fd, go fd).
        The init forks the worker (and so may anything run) once "g" is written to go."""
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        output_read, output_write = os.pipe()
        hello, hello_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The kernel attaches the sender's credentials, its pid translated into our pid namespace.
        hello.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        ours = (request_write, reply_read, output_read)
        control = self._control
        assert control is not None  # start() connected it
        try:
            try:
                socket.send_fds(
                    control,
                    [json.dumps(self._request(rlimits, scratch_mb)).encode()],
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
            return ForkedProcess(pid), *ours, hello.detach()
        except BaseException:
            for fd in ours:
                os.close(fd)
            hello.close()
            raise

    def _hello_pid(self, hello: socket.socket, timeout: float, output_read: int) -> int:
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
        credential: tuple[int, int, int] = struct.unpack("iII", credentials[0][:12])
        pid = credential[0]
        status = read(f"/proc/{pid}/status")
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if self.host.layer == "landlock":
            # It must be a child of this slot's template's forked process, not a stray process.
            parent = int(fields.get("PPid", "0").strip() or 0)
            if parent != self.pid:
                raise WorkerError(f"a forked worker reported pid {pid}, which is not this template's child")
            return pid
        # It must be the init of a pid namespace of its own (NSpid ends in 1), not a stray process.
        nspids = fields.get("NSpid", "").split()
        if len(nspids) < 2 or nspids[-1] != "1":
            raise WorkerError(f"a forked worker reported pid {pid}, which is not a fresh pid namespace's init")
        return pid

    def end_worker(self) -> None:
        """After a worker ended (Landlock layer): kill whatever it left in the template's tree (its
        orphans reparent to the template, a child subreaper) and remove its folder."""
        if self.host.layer != "landlock" or self._process is None:
            return
        kill_tree(self._process.pid, keep_root=True)
        if self.worker_folder is not None:
            shutil.rmtree(self.worker_folder, ignore_errors=True)
            self.worker_folder = None

    def stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None:
            kill_tree(self._process.pid, keep_root=True)
            kill_group_and_leader(self._process)
            self._process.wait()
            self._process = None
        if self._drain is not None:
            self._drain.join(timeout=5)
        if self._launch is not None:
            self._launch.cleanup()
            self._launch = None


TemplateKey = tuple["HostSandbox", int, tuple[str, ...]]
_TEMPLATES: dict[TemplateKey, WorkerTemplate] = {}
_TEMPLATE_FAILURES: dict[TemplateKey, int] = {}  # failed starts per key; after two, workers start from scratch


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


def stop_worker_templates() -> None:
    for template in _TEMPLATES.values():
        template.stop()
    _TEMPLATES.clear()


atexit.register(stop_worker_templates)
