"""Confinement without namespaces (grader/sandbox: confine.py, landlock.py, seccomp.py): Landlock, seccomp, no_new_privs, a spare uid.

The end-to-end tests start this file as a script (the probe at the bottom) in four setups: as root,
as an ordinary uid, and both again where no user namespace can be made (the case bubblewrap cannot
serve: Ubuntu 24.04 without an AppArmor profile, Docker, Gradescope). The probe plays a worker
template: it confines itself to a scratch root, tries the attacks, then forks two workers that
each confine themselves to their own scratch subfolder, and one attacks the other. Every setup runs
once without confinement too, so each denial asserted here is shown to be the confinement's doing.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(Path(__file__).resolve().parent)]  # the probe runs with python -I

from grader.sandbox import confine, landlock, seccomp  # noqa: E402

SPARE_UID = 62501  # the probe's spare uid as root; outside the grader's worker range (61000-61999)
CLONE_NEWUSER = 0x10000000
PTRACE_SEIZE = 0x4206
PR_SET_DUMPABLE = 4


# -- the probe (runs in a child process) ---------------------------------------------------------


def _attempt(action) -> str:
    """'ok', or why it failed."""
    try:
        action()
        return "ok"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _in_child(action) -> str:
    """'ok' if `action` worked in a forked child (for what must not touch this process)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            action()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return "ok" if os.waitstatus_to_exitcode(status) == 0 else "failed"


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str):
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _read(path: str):
    with open(path, "rb") as handle:
        handle.read(100)


def _connect_unix(address: str):
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(address)


def _worker_plan(config: dict, folder: str) -> confine.Plan:
    return confine.Plan.from_json(config["plan"]).nested(confine.standard_read_write(folder))


def _worker_attacks(config: dict, target: int, secret: str) -> dict:
    """In a worker: what it can do to its sibling `target`, whose scratch holds `secret`."""
    libc = _libc()
    results = {
        "ptrace sibling": _in_child(lambda: _check(libc.ptrace(PTRACE_SEIZE, target, 0, 0), "ptrace")),
        "read sibling environ": _attempt(lambda: _read(f"/proc/{target}/environ")),
        "read sibling scratch": _attempt(lambda: _read(secret)),
        "user namespace": _in_child(lambda: _check(libc.unshare(CLONE_NEWUSER), "unshare")),
    }
    if config.get("torch"):

        def tensor_op():
            import torch

            value = (torch.ones(3, 3) @ torch.ones(3, 3)).sum().item()
            assert value == 27.0, value

        results["torch"] = _attempt(tensor_op)
    results["kill sibling"] = _attempt(lambda: os.kill(target, signal.SIGTERM))
    return results


def _run_workers(config: dict, scratch: str) -> dict:
    """Fork worker 1 (writes a secret, then waits) and worker 2 (attacks worker 1)."""
    folders = [os.path.join(scratch, name) for name in ("w1", "w2")]
    for folder in folders:
        os.mkdir(folder, 0o700)
    secret = os.path.join(folders[0], "secret.txt")
    ready_read, ready_write = os.pipe()
    hold_read, hold_write = os.pipe()
    first = os.fork()
    if first == 0:
        os.close(ready_read)
        os.close(hold_write)
        if config["confine"]:
            confine.apply(_worker_plan(config, folders[0]))
        _libc().prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # as the kit's workers are: only confinement protects them
        Path(secret).write_text("worker 1's answer")
        os.write(ready_write, b"r")
        os.read(hold_read, 1)  # until the probe closes it
        os._exit(0)
    os.close(ready_write)
    os.close(hold_read)
    os.read(ready_read, 1)
    answer_read, answer_write = os.pipe()
    second = os.fork()
    if second == 0:
        os.close(answer_read)
        results = {}
        try:
            if config["confine"]:
                confine.apply(_worker_plan(config, folders[1]))
            results = _worker_attacks(config, first, secret)
            results["write own scratch"] = _attempt(lambda: Path(folders[1], "mine.txt").write_text("ok"))
        except Exception as exc:
            results = {"worker error": repr(exc)}
        os.write(answer_write, json.dumps(results).encode())
        os._exit(0)
    os.close(answer_write)
    chunks = []
    while chunk := os.read(answer_read, 65536):
        chunks.append(chunk)
    os.waitpid(second, 0)
    results = json.loads(b"".join(chunks))
    done, _ = os.waitpid(first, os.WNOHANG)
    for _ in range(100 if results.get("kill sibling") == "ok" else 0):  # a delivered SIGTERM takes a moment
        if done:
            break
        time.sleep(0.02)
        done, _ = os.waitpid(first, os.WNOHANG)
    results["sibling survived kill"] = "ok" if done == 0 else "died"
    os.close(hold_write)
    if done == 0:
        os.waitpid(first, 0)
    return results


def probe(config: dict) -> dict:
    libc = _libc()
    results = {
        "userns possible": _in_child(lambda: _check(libc.unshare(CLONE_NEWUSER), "unshare")),
        "uid before": os.getuid(),
    }
    if config["confine"]:
        results["confined"] = confine.apply(confine.Plan.from_json(config["plan"])).__dict__
    elif confine.Plan.from_json(config["plan"]).uid is not None:  # the spare-uid setup's control: the uid only
        uid = confine.Plan.from_json(config["plan"]).uid
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    results["uid"] = os.getuid()
    for label, path in config["decoys"].items():
        results[f"read {label}"] = _attempt(lambda path=path: _read(path))
    outside = config["outside"]
    results["write outside scratch"] = _attempt(lambda: Path(outside, "planted.py").write_text("x"))
    results["chmod outside scratch"] = _attempt(lambda: os.chmod(config["decoys"]["/tmp solutions"], 0o644))
    results["tcp connect"] = _attempt(lambda: socket.create_connection(("127.0.0.1", config["port"]), 3).close())
    results["udp send"] = _attempt(
        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", config["port"]))
    )
    results["connect named unix socket"] = _attempt(lambda: _connect_unix(config["unix_socket"]))
    results["connect abstract unix socket"] = _attempt(lambda: _connect_unix(config["abstract_socket"]))
    results["write scratch"] = _attempt(lambda: Path(config["scratch"], "notes.txt").write_text("ok"))
    results.update(_run_workers(config, config["scratch"]))
    return results


# -- the tests ---------------------------------------------------------------------------------------

import pytest  # noqa: E402
from sandbox_helpers import TEST_UID, LoopbackListener, as_user_command, without_user_namespaces  # noqa: E402

# name: (ordinary uid or None for root, spare uid, user namespaces disabled, Landlock ABI limit, torch)
SETUPS = {
    "root": (None, None, False, None, False),
    "ordinary-uid": (TEST_UID, None, False, None, False),
    "root-spare-uid-no-userns": (None, SPARE_UID, True, None, True),
    "ordinary-uid-no-userns-abi4": (TEST_UID, None, True, 4, False),  # torch: the ABI 7 setup is stricter
}
ATTACKS = (
    "write outside scratch",
    "chmod outside scratch",
    "tcp connect",
    "udp send",
    "connect named unix socket",
    "connect abstract unix socket",
    "ptrace sibling",
    "read sibling environ",
    "read sibling scratch",
    "kill sibling",
)


_without_user_namespaces = without_user_namespaces


@pytest.fixture(scope="module")
def listeners():
    """A loopback TCP/UDP listener, a named unix socket anyone may connect to, an abstract one."""
    tcp = LoopbackListener()
    folder = tempfile.mkdtemp(prefix="segkit-confine-sock-")
    os.chmod(folder, 0o755)
    named = socket.socket(socket.AF_UNIX)
    named.bind(f"{folder}/listener.sock")
    os.chmod(f"{folder}/listener.sock", 0o777)
    named.listen(16)
    abstract = socket.socket(socket.AF_UNIX)
    abstract_name = f"\0segkit-confine-test-{os.getpid()}"
    abstract.bind(abstract_name)
    abstract.listen(16)
    yield {"port": tcp.port, "unix_socket": f"{folder}/listener.sock", "abstract_socket": abstract_name}
    tcp.close()
    named.close()
    abstract.close()
    shutil.rmtree(folder, ignore_errors=True)


def _make_decoys(owner: int) -> tuple[str, dict[str, str]]:
    """A world-readable fake solutions/ folder in /tmp owned by `owner` (so only confinement stops it)."""
    base = tempfile.mkdtemp(prefix="segkit-confine-decoy-")
    os.chmod(base, 0o755)
    solutions = Path(base, "solutions")
    solutions.mkdir(mode=0o755)
    answer = solutions / "answer.py"
    answer.write_text("ANSWER = 42\n")
    os.chmod(answer, 0o644)
    for path in (base, solutions, answer):
        os.chown(path, owner, owner)
    return base, {"/tmp solutions": str(answer)}


def _run_probe(name: str, confined: bool, listeners: dict) -> dict:
    user, spare, no_userns, abi_limit, torch = SETUPS[name]
    final_uid = spare if spare is not None else (user if user is not None else 0)
    decoy_dir, decoys = _make_decoys(final_uid)
    root_decoy = None
    if user is None and spare is None:  # root sees /root; the staged setups hide it behind a tmpfs
        root_decoy = tempfile.mkdtemp(prefix="segkit-confine-decoy-", dir="/root")
        Path(root_decoy, "solutions").mkdir()
        Path(root_decoy, "solutions", "answer.py").write_text("ANSWER = 42\n")
        decoys["/root solutions"] = f"{root_decoy}/solutions/answer.py"
    decoys["kit solutions"] = str(REPO_ROOT / "solutions" / "patches" / "patches.ipynb")
    scratch = tempfile.mkdtemp(prefix="segkit-confine-scratch-")
    os.chown(scratch, final_uid, final_uid)
    plan = confine.Plan(
        read_only=confine.standard_read_only(proc=True),
        read_write=confine.standard_read_write(scratch),
        uid=spare,
        abi_limit=abi_limit,
    )
    config = {
        "confine": confined,
        "plan": plan.to_json(),
        "decoys": decoys,
        "outside": decoy_dir,
        "scratch": scratch,
        "torch": torch and confined,
        **listeners,
    }
    argv = [sys.executable, "-I", "-B", str(Path(__file__)), json.dumps(config)]
    env = {"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}
    stage = None
    if user is not None or spare is not None:
        argv, stage = as_user_command(argv, uid=user if user is not None else 0, env=env)
    if no_userns:
        argv = _without_user_namespaces(argv)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env if stage is None else None)
    finally:
        for folder in (decoy_dir, root_decoy, scratch, stage):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("setup", list(SETUPS))
def test_confined_worker_reaches_nothing_outside_its_allow_list(setup, listeners):
    """In each setup (root, ordinary uid, without user namespaces), does a process confined by the
    plan fail to read a fake solutions folder, write outside its scratch, chmod, reach TCP, UDP or
    another unix socket; and does a worker confined to its own scratch subfolder fail to read, ptrace
    or kill its sibling, while it can still write its own scratch and run torch? And does every one
    of those attacks work without the confinement?"""
    if os.geteuid() != 0:
        pytest.skip("the setups switch uids and disable user namespaces, which needs root")
    if not confine.available().usable:
        pytest.skip("this kernel offers no Landlock or seccomp (python -m grader.sandbox says why)")
    user, spare, no_userns, abi_limit, torch = SETUPS[setup]
    control = _run_probe(setup, False, listeners)
    confined = _run_probe(setup, True, listeners)
    decoys = [key for key in control if key.startswith("read ") and key.endswith(" solutions")]
    assert len(decoys) >= 2
    for attack in (*decoys, *ATTACKS):
        assert control[attack] == "ok", f"{attack} fails even without confinement: {control[attack]}"
        assert confined[attack] != "ok", f"{attack} worked under confinement"
    assert control["sibling survived kill"] == "died" and confined["sibling survived kill"] == "ok"
    assert confined["write scratch"] == "ok" and confined["write own scratch"] == "ok", confined
    assert confined["user namespace"] != "ok"
    if no_userns:
        assert control["userns possible"] == "failed" and control["user namespace"] == "failed"
    else:
        assert control["user namespace"] == "ok"
    details = confined["confined"]
    assert details["uid"] == (spare if spare is not None else (user or 0))
    assert details["landlock_abi"] == (abi_limit or landlock.abi_version())
    assert details["signals"] == ("seccomp" if (abi_limit or 99) < 6 else "landlock")
    assert details["tcp_denied"] is True
    if torch:
        assert confined["torch"] == "ok", confined["torch"]


def test_host_offers_the_layer():
    """Does the probe find Landlock and seccomp on this host (the layer the tests above exercise)?"""
    layer = confine.available()
    assert layer.usable, layer
    assert layer.landlock_abi == landlock.abi_version() >= 1
    assert "filesystem" in layer.features() and layer.protections() and layer.gives_up()


def test_preexec_and_launcher_confine_an_executed_program_and_report_a_refusal(tmp_path):
    """Does a plan applied in preexec_fn or by launch.py survive exec (the program cannot read outside
    the allow-list, and could without it), and does a plan the host cannot meet stop it with its reason?"""
    secret = tmp_path / "answer.txt"
    secret.write_text("42")
    reader = [sys.executable, "-I", "-S", "-c", f"print(open({str(secret)!r}).read())"]
    plan = confine.Plan(confine.standard_read_only(), confine.standard_read_write(str(tmp_path / "scratch")))
    free = subprocess.run(reader, capture_output=True, text=True, timeout=60)
    assert free.stdout.strip() == "42"
    confined = subprocess.run(
        reader, capture_output=True, text=True, timeout=60, preexec_fn=confine.preexec(plan), start_new_session=True
    )
    assert confined.returncode == 1 and "PermissionError" in confined.stderr, confined.stderr
    launched = subprocess.run(confine.command(plan, reader), capture_output=True, text=True, timeout=60)
    assert launched.returncode == 1 and "PermissionError" in launched.stderr, launched.stderr
    impossible = confine.Plan(plan.read_only, plan.read_write, require=("scopes",), abi_limit=4)
    refused = subprocess.run(reader, capture_output=True, text=True, timeout=60, preexec_fn=confine.preexec(impossible))
    assert refused.returncode == confine.PREEXEC_FAILED and "missing Landlock features scopes" in refused.stderr
    refused = subprocess.run(confine.command(impossible, reader), capture_output=True, text=True, timeout=60)
    assert refused.returncode == confine.PREEXEC_FAILED and "missing Landlock features scopes" in refused.stderr


def test_each_abi_handles_only_its_own_rights():
    """Are rights an ABI lacks masked out (as the kernel's sandboxer.c does), so an older kernel
    accepts the ruleset instead of refusing it?"""
    assert landlock.handled_rights(0) == (0, 0, 0)
    assert landlock.handled_rights(1) == (landlock.FS_ABI1, 0, 0)
    assert landlock.handled_rights(2)[0] == landlock.FS_ABI1 | landlock.FS_REFER
    assert landlock.handled_rights(3)[0] & landlock.FS_TRUNCATE and not landlock.handled_rights(3)[1]
    assert landlock.handled_rights(4) == (landlock.FS_BY_ABI[3], 3, 0)
    assert landlock.handled_rights(5)[0] & landlock.FS_IOCTL_DEV and not landlock.handled_rights(5)[2]
    assert landlock.handled_rights(6) == (landlock.FS_ALL, 3, 3) == landlock.handled_rights(7)


def _run_filter(code: bytes, nr: int, args=(0,) * 6, arch: int | None = None) -> int:
    """Evaluate a seccomp BPF program on one system call, as the kernel would."""
    arch = seccomp.AUDIT_ARCH["x86_64"] if arch is None else arch
    data = struct.pack("=iIQ6Q", nr, arch, 0, *(list(args) + [0] * 6)[:6])
    program = [struct.unpack_from("=HBBI", code, offset) for offset in range(0, len(code), 8)]
    pc, accumulator = 0, 0
    while True:
        op, true, false, k = program[pc]
        if op == seccomp.BPF_LD_W_ABS:
            accumulator = struct.unpack_from("=I", data, k)[0]
        elif op == seccomp.BPF_AND_K:
            accumulator &= k
        elif op == seccomp.BPF_RET_K:
            return k
        else:
            taken = {
                seccomp.BPF_JEQ_K: accumulator == k,
                seccomp.BPF_JGE_K: accumulator >= k,
                seccomp.BPF_JSET_K: bool(accumulator & k),
            }[op]
            pc += true if taken else false
        pc += 1


def test_seccomp_filter_decisions():
    """Does the filter kill a foreign architecture and x32 calls, refuse IP sockets with EACCES but
    allow unix stream sockets, refuse namespace clones, and keep signals in the own process group
    (reading a pid's low 32 bits, as the kernel does)?"""
    nr = {name: numbers[0] for name, numbers in seccomp.SYSCALLS.items()}
    code = seccomp.build(seccomp.Policy(own_pid=4242, own_pgid=4242), "x86_64")
    eperm, eacces = seccomp.RET_ERRNO | errno.EPERM, seccomp.RET_ERRNO | errno.EACCES
    allow = seccomp.RET_ALLOW
    assert _run_filter(code, nr["kill"], arch=0x40000003) == seccomp.RET_KILL_PROCESS  # i386
    assert _run_filter(code, seccomp.X32_SYSCALL_BIT | 0) == seccomp.RET_KILL_PROCESS
    assert _run_filter(code, 0) == allow  # read
    assert _run_filter(code, nr["socket"], (socket.AF_INET, socket.SOCK_STREAM)) == eacces
    assert _run_filter(code, nr["socket"], (socket.AF_NETLINK, socket.SOCK_RAW)) == eacces
    assert _run_filter(code, nr["socket"], (socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)) == allow
    assert _run_filter(code, nr["socket"], (socket.AF_UNIX, socket.SOCK_DGRAM)) == eacces
    assert _run_filter(code, nr["connect"]) == eacces
    assert _run_filter(code, nr["clone"], (0x01200011,)) == allow  # fork()'s flags
    assert _run_filter(code, nr["clone"], (0x01200011 | CLONE_NEWUSER,)) == eperm
    assert _run_filter(code, nr["clone3"]) == seccomp.RET_ERRNO | errno.ENOSYS
    for name in ("ptrace", "bpf", "io_uring_setup", "keyctl", "perf_event_open", "userfaultfd", "setns", "mount"):
        assert _run_filter(code, nr[name]) == eperm, name
    assert _run_filter(code, nr["kill"], (4242, 15)) == allow
    assert _run_filter(code, nr["kill"], (0, 15)) == allow
    assert _run_filter(code, nr["kill"], ((-4242) & 0xFFFFFFFFFFFFFFFF, 15)) == allow
    assert _run_filter(code, nr["kill"], (4242 | 1 << 32, 15)) == allow  # the kernel reads an int
    assert _run_filter(code, nr["kill"], (4243, 15)) == eperm
    assert _run_filter(code, nr["kill"], ((-1) & 0xFFFFFFFFFFFFFFFF, 9)) == eperm
    assert _run_filter(code, nr["tgkill"], (4243, 4243, 9)) == eperm
    assert _run_filter(code, nr["prlimit64"], (4243,)) == eperm
    assert _run_filter(code, nr["utimensat"], (3, 0, 0, 0)) == allow  # futimens(fd)
    assert _run_filter(code, nr["utimensat"], (3, 0x7FFF0000, 0, 0)) == eperm
    unscoped = seccomp.build(seccomp.Policy(unix_connect=True), "x86_64")
    assert _run_filter(unscoped, nr["kill"], (4243, 15)) == allow  # signals left to Landlock's scope
    assert _run_filter(unscoped, nr["connect"]) == allow
    aarch64 = seccomp.build(seccomp.Policy(own_pid=7), "aarch64")
    arm = seccomp.AUDIT_ARCH["aarch64"]
    assert _run_filter(aarch64, seccomp.SYSCALLS["ptrace"][1], arch=arm) == eperm
    assert _run_filter(aarch64, seccomp.SYSCALLS["ptrace"][1]) == seccomp.RET_KILL_PROCESS  # x86_64 call


def _header_numbers(path: str) -> dict[str, int]:
    numbers = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("__NR_") and parts[2].isdigit():
            numbers[parts[1][5:]] = int(parts[2])
    return numbers


@pytest.mark.parametrize(
    "column, header",
    [(0, "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"), (1, "/usr/include/asm-generic/unistd.h")],
)
def test_system_call_numbers_match_the_kernel_headers(column, header):
    """Does every number in the filter's table match this system's kernel headers (x86_64, and the
    generic table that aarch64 uses), for the calls those headers know?"""
    if not os.path.exists(header):
        pytest.skip(f"{header} is not installed")
    known = _header_numbers(header)
    compared = 0
    for name, numbers in seccomp.SYSCALLS.items():
        if numbers[column] is not None and name in known:
            assert numbers[column] == known[name], name
            compared += 1
    assert compared >= 60


def test_package_loads_without_the_grader():
    """Can a worker template load the worker side of grader/sandbox (confine, protocol) by path,
    without the package's __init__ (it cannot see the rest of grader/)?"""
    folder = REPO_ROOT / "grader" / "sandbox"
    for name in ("confine.py", "landlock.py", "seccomp.py", "launch.py", "protocol.py"):
        text = (folder / name).read_text()
        assert "import grader" not in text and "from grader" not in text, name
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('l', {str(folder / 'launch.py')!r})\n"
        "launch = importlib.util.module_from_spec(spec); spec.loader.exec_module(launch)\n"
        "confine = launch.load('confine'); protocol = launch.load('protocol')\n"
        "assert 'grader' not in sys.modules and 'torch' not in sys.modules\n"
        "print(confine.landlock.abi_version(), protocol.HEADER.size)\n"
    )
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(landlock.abi_version()), "8"]


def test_nested_plan_keeps_read_only_and_drops_the_uid_switch():
    """Does a worker's nested plan keep the template's read-only list (or a narrower one), take its
    own read-write folder, and not try to switch uid again?"""
    plan = confine.Plan(("/usr",), ("/scratch",), uid=SPARE_UID, rlimits=(("RLIMIT_NPROC", 64),))
    nested = plan.nested(("/scratch/w1",))
    assert nested.read_only == ("/usr",) and nested.read_write == ("/scratch/w1",)
    assert nested.uid is None and nested.rlimits == plan.rlimits
    assert plan.nested(("/scratch/w2",), read_only=()).read_only == ()
    assert confine.Plan.from_json(nested.to_json()) == nested
    assert confine.Plan.from_json(plan.to_json()) == plan
    assert stat.S_ISDIR(os.stat("/usr").st_mode)


if __name__ == "__main__":
    print(json.dumps(probe(json.loads(sys.argv[1]))))
