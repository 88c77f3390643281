"""The untrusted side of grading: runs ONE student's notebook cells and answers probes.

This file is copied or bound (read-only, next to the `starter` package and `sandbox/`, the worker
side of grader/sandbox: protocol.py, and for the Landlock layer confine.py, landlock.py,
seccomp.py) into the worker's sandbox and runs there as an unprivileged user. It must not import
anything from `grader` (the worker cannot see that folder): it loads `sandbox/protocol.py` by path.
The frames and messages are described there.

Nothing here is trusted by the parent: it loads every reply with
`torch.load(..., weights_only=True)` and compares values itself. Student code can
forge replies, but a forged reply is no more than a return value it could have
produced anyway; the parent chooses the inputs and computes the expected outputs.
"""

import os
import re
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
# The type checker's names: this file imports nothing else at run time (the sandbox sees only the
# standard library), so the block never runs and the annotations that use it are quoted.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    import socket
    import types
    from collections.abc import Callable
    from typing import Any, NoReturn
_MAGIC_LINE = re.compile(r"^(\s*)[%!].*$")


def load_sandbox_side(name: str) -> "types.ModuleType":
    """sandbox/<name>.py of the kit folder, by path (launch.load keeps one package name for it)."""
    import importlib.util

    path = os.path.join(HERE, "sandbox", "launch.py")
    spec = importlib.util.spec_from_file_location("segkit_sandbox_launch", path)
    assert spec is not None and spec.loader is not None  # a .py path always has a source loader
    launch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch)
    module: types.ModuleType = launch.load(name, os.path.join(HERE, "sandbox"))
    return module


protocol = load_sandbox_side("protocol")


def strip_magics(source: str) -> str:
    """Turn IPython magics and shell escapes into `pass`: the worker is plain Python."""
    return "\n".join(_MAGIC_LINE.sub(r"\1pass", line) for line in source.split("\n"))


def short_error(exc: BaseException) -> str:
    """One line for the student plus the frames that came from their own cells."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell")]
    where = ""
    if frames:
        last = frames[-1]
        where = f" (in {last.filename[1:-1]}, line {last.lineno})"
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > 500:
        text = text[:500] + "..."
    return text + where


def apply_limits(limits: dict[str, int]) -> None:
    """Lower this process's resource limits before any student code runs (it cannot raise them again).
    Inside the sandbox's user namespace RLIMIT_NPROC counts this worker's own processes only."""
    import resource

    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def _reap_until(worker: int) -> "NoReturn":
    """As a pid namespace's init: reap every orphan until the worker exits, then exit with its status."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == worker:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def main() -> None:
    if sys.argv[1] == "--template":
        template(int(sys.argv[2]))
        return
    fd_in, fd_out = int(sys.argv[1]), int(sys.argv[2])
    if len(sys.argv) > 4:  # the Landlock layer, started from scratch: this process is the worker's init
        _confined_init(fd_in, fd_out, sys.argv[4])
    if len(sys.argv) > 3:
        import json

        apply_limits(json.loads(sys.argv[3]))
    sys.path.insert(0, HERE)  # the student-visible `starter` package
    serve(fd_in, fd_out)


def _confined_init(fd_in: int, fd_out: int, plan_json: str) -> None:
    """Started from scratch in the Landlock layer (confined by the grader's preexec_fn, with /proc):
    stay as the init, a child subreaper that only reaps, and return in a forked child once that
    child has confined itself further (the worker's own plan: nested, no /proc, own session), so the
    worker cannot signal or trace its init and nothing it starts leaves the tree."""
    libc = _libc()
    _check(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
    worker = os.fork()
    if worker == 0:
        import signal

        _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
        confine = load_sandbox_side("confine")
        confine.apply(confine.Plan.from_json(plan_json))
        return
    for fd in (fd_in, fd_out):
        os.close(fd)
    _reap_until(worker)


def serve(fd_in: int, fd_out: int) -> None:
    """Answer requests on fd_in until "quit" or end of input: the worker's whole life."""
    import torch

    torch.set_num_threads(1)
    save = torch.save  # keep our own reference: student code may replace torch.save

    load = torch.load
    write_frame, encode = protocol.write_frame, protocol.encode

    def reply(obj: dict[str, object]) -> None:
        try:
            payload = encode(obj, save)
        except Exception as exc:  # unpicklable student object: report, do not crash
            error = f"result is not plain data: {type(exc).__name__}"
            keys = {"op": obj.get("op"), "id": obj.get("id"), "grade_id": obj.get("grade_id")}
            payload = encode({**keys, "status": "error", "error": error}, save)
        write_frame(fd_out, payload)

    namespace: dict[str, Any] = {"__name__": "__main__"}
    reply({"op": "ready"})
    while True:
        frame = protocol.read_frame(fd_in, protocol.MAX_REQUEST_BYTES)
        if frame is None:
            return
        request = protocol.decode(frame, load)
        op = request.get("op")
        if op == "quit":
            return
        if op == "exec":
            gid = request["grade_id"]
            try:
                code = compile(strip_magics(request["source"]), f"<cell {gid}>", "exec")
                exec(code, namespace)
                reply({"op": "exec", "grade_id": gid, "status": "ok", "error": ""})
            except BaseException as exc:  # SystemExit and KeyboardInterrupt included
                reply({"op": "exec", "grade_id": gid, "status": "error", "error": short_error(exc)})
        elif op == "probe":
            try:
                probe_globals: dict[str, Any] = {"__name__": "probe"}
                exec(compile(request["source"], "<probe>", "exec"), probe_globals)
                value = probe_globals[request["name"]](namespace, *request["args"], **request["kwargs"])
                reply({"op": "probe", "id": request["id"], "status": "ok", "value": to_plain(value, torch)})
            except BaseException as exc:
                reply({"op": "probe", "id": request["id"], "status": "error", "error": short_error(exc)})


def to_plain(value: "Any", torch: "types.ModuleType") -> object:
    """Copy a probe result into plain containers of plain tensors and scalars."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").clone()
    if type(value).__module__ == "numpy" and hasattr(value, "shape"):
        return torch.from_numpy(value.copy())
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    if type(value) in (list, tuple):
        return [to_plain(v, torch) for v in value]
    if type(value) is dict:
        return {str(k): to_plain(v, torch) for k, v in value.items()}
    raise TypeError(f"probe returned a {type(value).__name__}, which is not plain data")


# -- the template: one pre-imported per grading slot, forked once per submission ----------------
#
# Importing torch and torchvision costs more CPU than grading a whole submission, so a grading slot
# keeps one template process inside the same bubblewrap sandbox as a worker, imports once there,
# and forks a fresh worker per submission. The template never runs student code.
# bubblewrap layer: each worker gets, before any student code, new mount, pid, network, ipc and
# uts namespaces (so nothing of an earlier worker, of the template or of the host is visible), a
# fresh size-capped /scratch and /dev/shm, its own /proc, no capabilities at all, and then its
# resource limits. The template keeps capabilities inside the sandbox's user namespace only (they
# are what lets it mount). Landlock layer: the worker confines itself (Landlock, seccomp) to its
# own folder of the template's scratch root, in a session of its own, as a child subreaper.
# Either way the template is not dumpable, so a worker of the same uid cannot read or write its memory.

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_CAP_AMBIENT = 1, 4, 24, 47
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_SYS_ADMIN = 21
SANDBOX_UID = 1000
PROC_COVERED = ("sys", "sysrq-trigger", "irq", "bus")  # read-only in the worker's /proc, as bwrap does
PRELOAD = ("torch", "torchvision", "numpy", "PIL.Image", "matplotlib", "matplotlib.pyplot", "starter")


def _libc() -> "ctypes.CDLL":
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(
    libc: "ctypes.CDLL", source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _effective_caps() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def _shared_writable_mappings() -> list[str]:
    """Mappings a forked worker would share with the template and so with later workers."""
    with open("/proc/self/maps") as handle:
        return [line.strip() for line in handle if line.split()[1][1] == "w" and line.split()[1][3] == "s"]


def _drop_all_capabilities(libc: "ctypes.CDLL") -> None:
    import ctypes

    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (x2) all empty
    _check(libc.capset(header, data), "capset")
    if _effective_caps() != 0:
        raise OSError("capabilities are still set")


def template(control_fd: int) -> None:
    """Serve fork requests on `control_fd` (a SOCK_SEQPACKET socket) until it closes.

    Request: JSON {"limits": {...rlimits}, "scratch_mb": int, "shm_mb": int, "layer": str, and for
    the Landlock layer "folder": the worker's folder, "plan": its confine.Plan} with four descriptors
    (request_read, reply_write, output_write, hello). Answer: JSON {"forked": true} or {"error": str}.
    The worker's init sends one byte on `hello`; the grader reads its host pid from that message's
    credentials (SO_PASSCRED), caps it, and answers "g", upon which the init forks the worker.
    """
    import json
    import socket

    sys.path.insert(0, HERE)
    control = socket.socket(fileno=control_fd)
    libc = _libc()
    _preload()
    refusal = _template_refusal(libc)
    _check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    control.send(json.dumps({"ready": not refusal, "error": refusal}).encode())
    if refusal:
        return
    children: set[int] = set()
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 16, 8)
        except OSError:
            return
        if not message:
            return
        # One worker at a time: the grader kills the previous one before it asks for the next.
        for pid in list(children):
            os.waitpid(pid, 0)
            children.discard(pid)
        _reap_orphans()
        try:
            children.add(_fork_worker(libc, control, json.loads(message), fds))
            answer: dict[str, object] = {"forked": True}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        for fd in fds:
            os.close(fd)
        control.send(json.dumps(answer).encode())


def _preload() -> None:
    """Import what every worker needs once, here, so that each fork has it for free."""
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:  # a missing optional package only costs its import later, in the worker
            pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _template_refusal(libc: "ctypes.CDLL") -> str:
    """Why this template must not fork workers ("" if it may). In the Landlock layer (its kit holds
    confine.py) it also becomes a child subreaper: what a dead worker leaves behind stays in its tree."""
    confined = os.path.exists(os.path.join(HERE, "sandbox", "confine.py"))
    if confined:
        load_sandbox_side("confine")  # imported before forking: a worker's plan needs it, not its files
        _check(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
    shared = _shared_writable_mappings()
    threads = len(os.listdir("/proc/self/task"))
    if not confined and not _effective_caps() >> CAP_SYS_ADMIN & 1:
        return "the template has no CAP_SYS_ADMIN in its user namespace (it cannot build workers)"
    if shared:
        return "the template holds shared writable memory: " + "; ".join(shared[:3])
    if threads != 1:
        return f"the template runs {threads} threads; it must fork from one"
    return ""


def _fork_worker(libc: "ctypes.CDLL", control: "socket.socket", request: "dict[str, Any]", fds: list[int]) -> int:
    """Fork the child that becomes this request's worker (through its init); its pid."""
    if len(fds) != 4:
        raise ValueError(f"expected 4 descriptors, got {len(fds)}")
    if _shared_writable_mappings():
        raise RuntimeError("the template holds shared writable memory")
    pid = os.fork()
    if pid:
        return pid
    status = 70
    try:
        control.close()
        if request.get("layer") == "landlock":
            _become_confined_worker(libc, fds, request)
        else:
            _become_worker(libc, fds, request)
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)


def _loopback_up() -> None:
    """The new network namespace's loopback starts down; bring it up as bwrap does (only `lo` exists)."""
    import fcntl
    import socket
    import struct

    iff_up, iff_loopback, iff_running, siocsifflags = 0x1, 0x8, 0x40, 0x8914
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as handle:
        fcntl.ioctl(handle, siocsifflags, struct.pack("16sH14x", b"lo", iff_up | iff_loopback | iff_running))


def _become_worker(libc: "ctypes.CDLL", fds: list[int], request: "dict[str, Any]") -> None:
    """In the template's child: build the worker's namespaces, fork their pid 1 (which forks the
    worker) and wait for it. Neither this process nor that pid 1 runs student code; each dies with
    its parent."""
    import signal

    request_read, reply_write, _, hello_fd = fds
    _setup_child(libc, fds)
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    _check(libc.unshare(flags), "unshare")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here reaches the template
    _loopback_up()
    owner = f"uid={SANDBOX_UID},gid={SANDBOX_UID}"
    _mount(
        libc,
        "tmpfs",
        "/scratch",
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={int(request['scratch_mb'])}m,mode=0700,{owner}",
    )
    _mount(libc, "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(request['shm_mb'])}m,mode=1777")
    pid = os.fork()
    if pid:
        for fd in (request_read, reply_write, hello_fd):
            os.close(fd)
        while True:
            try:
                os.waitpid(pid, 0)
                return
            except ChildProcessError:
                return
            except InterruptedError:
                continue

    # pid 1 of the new pid namespace: mounts its /proc, drops every capability, reports its host pid
    # (the grader puts it under the submission's caps), then forks the worker and reaps until it ends.
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name in PROC_COVERED:
        path = f"/proc/{name}"
        if os.path.exists(path):
            _mount(libc, path, path, None, MS_BIND | MS_REC)
            _mount(libc, None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.setsid()  # its own session and process group, inside the namespace
    os.chdir("/scratch")
    _drop_all_capabilities(libc)
    _init_then_worker(libc, request, request_read, reply_write, hello_fd)


def _reap_orphans() -> None:
    """Reap whatever a worker left to the template (Landlock layer: the grader killed it)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _setup_child(libc: "ctypes.CDLL", fds: list[int]) -> None:
    """In the template's child: die with the template; only the worker's descriptors stay open."""
    import signal

    request_read, reply_write, output_write, hello_fd = fds
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    os.dup2(output_write, 1)
    os.dup2(output_write, 2)
    keep = sorted({0, 1, 2, request_read, reply_write, hello_fd})
    for low, high in zip(keep, keep[1:] + [os.sysconf("SC_OPEN_MAX")]):
        os.closerange(low + 1, high)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _become_confined_worker(libc: "ctypes.CDLL", fds: list[int], request: "dict[str, Any]") -> None:
    """Landlock layer, in the template's child: become the worker's init, a child subreaper (every
    process the worker starts stays in this tree, which the grader kills whole), report the host
    pid, wait for the caps, then fork the worker, which confines itself to its own folder (its own
    session, no /proc, Landlock and seccomp nested in the template's, so it cannot signal this init
    or the template) before anything of the student's runs."""
    confine = load_sandbox_side("confine")
    request_read, reply_write, _, hello_fd = fds
    _setup_child(libc, fds)
    _check(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
    os.setsid()  # a group of its own, apart from the template's (the worker makes its own session too)
    os.chdir(request["folder"])
    plan = confine.Plan.from_json(request["plan"])
    _init_then_worker(libc, request, request_read, reply_write, hello_fd, lambda: confine.apply(plan))


def _init_then_worker(
    libc: "ctypes.CDLL",
    request: "dict[str, Any]",
    request_read: int,
    reply_write: int,
    hello_fd: int,
    confine_worker: "Callable[[], object] | None" = None,
) -> None:
    """The worker's init: report this host pid (the grader puts it under the submission's caps),
    fork the worker on "g" and reap until it ends. confine_worker: run in the worker first."""
    import signal
    import socket

    hello = socket.socket(fileno=hello_fd)
    hello.sendall(b"h")
    if hello.recv(1) != b"g":  # the grader has capped this process (or gave up)
        os._exit(0)
    worker = os.fork()
    if worker:
        hello.close()
        for fd in (request_read, reply_write):
            os.close(fd)
        _reap_until(worker)

    hello.close()
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    _check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")  # the template's setting is 0
    if confine_worker is not None:
        confine_worker()
    if "numpy" in sys.modules:  # `random` reseeds itself after fork; numpy's global state would not
        sys.modules["numpy"].random.seed()
    apply_limits(request["limits"])
    serve(request_read, reply_write)


if __name__ == "__main__":
    main()
