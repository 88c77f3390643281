"""The worker sandbox on its own: protocol, isolation, limits, and what can and cannot come back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grader.assignments import REPO_ROOT
from grader.sandbox import (
    PROTECTION_TEXT,
    HostSandbox,
    Limits,
    ProbeFailed,
    SandboxPlan,
    SandboxUnavailable,
    Worker,
    WorkerError,
    WorkerOutOfMemory,
    WorkerTemplate,
    WorkerTimeout,
    host_sandbox,
)


@pytest.fixture
def worker():
    w = Worker(slot=7, limits=Limits(cell_timeout=20, probe_timeout=20, memory_mb=2048))
    w.start()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def shared_worker():
    """One worker for the checks that only look around (they do not change or kill it)."""
    w = Worker(slot=9, limits=Limits(cell_timeout=20, probe_timeout=20, memory_mb=2048))
    w.start()
    yield w
    w.stop()


def probe_value(ns, name):
    return ns[name]


def probe_environment(ns, repo):
    import os
    import socket

    result = {
        "uid": os.getuid(),
        "repo_visible": os.path.exists(os.path.join(repo, "solutions")),
        "grader_visible": os.path.exists(os.path.join(repo, "grader", "checks")),
    }
    try:
        socket.create_connection(("127.0.0.1", 22), timeout=2).close()
        result["network"] = "connected"
    except OSError as exc:
        result["network"] = type(exc).__name__
    return result


def _source(probe):
    import inspect
    import textwrap

    return textwrap.dedent(inspect.getsource(probe))


def test_cells_run_in_order_and_errors_are_recorded(worker):
    """Does a raising cell get recorded while later cells still run?"""
    assert worker.exec_cell("a", "import torch\nx = torch.arange(4)")["status"] == "ok"
    failed = worker.exec_cell("b", "1 / 0")
    assert failed["status"] == "error" and "ZeroDivisionError" in failed["error"] and "cell b" in failed["error"]
    assert worker.exec_cell("c", "%matplotlib inline\n!pip install x\ny = x * 2")["status"] == "ok"
    assert torch.equal(worker.probe(_source(probe_value), "probe_value", ("y",)), torch.arange(4) * 2)


def test_sys_exit_in_a_cell_is_just_an_error(worker):
    """Does sys.exit in a student cell count as that cell's error without killing the worker?"""
    assert worker.exec_cell("a", "import sys\nsys.exit(3)")["status"] == "error"
    assert worker.exec_cell("b", "z = 1")["status"] == "ok"


def test_always_equal_objects_cannot_come_back(worker):
    """Is a returned object that claims equality with everything refused as non-plain data?"""
    worker.exec_cell("a", "class Eq:\n    def __eq__(self, o):\n        return True\nanswer = Eq()")
    with pytest.raises(ProbeFailed, match="not plain data"):
        worker.probe(_source(probe_value), "probe_value", ("answer",))
    worker.exec_cell(
        "b",
        "import torch\nclass T(torch.Tensor):\n    def __eq__(self, o):\n        return True\n"
        "sub = torch.zeros(3).as_subclass(T)",
    )
    with pytest.raises((ProbeFailed, WorkerError)):
        worker.probe(_source(probe_value), "probe_value", ("sub",))


def test_hang_is_killed_by_the_time_limit(worker):
    """Does an infinite loop end in a timeout instead of hanging the grader?"""
    with pytest.raises(WorkerTimeout):
        worker.exec_cell("loop", "while True:\n    pass", timeout=2)


def test_os_exit_is_detected(worker):
    """Does os._exit in student code surface as a dead worker, not a hang?"""
    with pytest.raises(WorkerError):
        worker.exec_cell("exit", "import os\nos._exit(0)")


def test_output_flood_is_capped(worker):
    """Is a flood of printed output drained and truncated to its head and tail?"""
    worker.exec_cell("spam", "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * 1_000_000)\nprint('END')")
    worker.stop()
    text = worker.output()
    assert "bytes of output dropped" in text and len(text) < 3 * Limits().output_keep_bytes
    assert text.rstrip().endswith("END")


def probe_view(ns):
    import os

    def exists(path):
        return os.path.lexists(path)

    writable = {}
    for path in ("/usr/x", "/etc/x", "/x", "/segkit/starter/x.py", "/proc/x", "/scratch/x", "/tmp/y"):
        try:
            with open(path, "w") as handle:
                handle.write("x")
            writable[path] = True
        except OSError:
            writable[path] = False
    return {
        "root": sorted(os.listdir("/")),
        "etc": sorted(os.listdir("/etc")),
        "home": exists("/home"),
        "srv": exists("/srv"),
        "opt": exists("/opt"),
        "mnt": exists("/mnt"),
        "var": exists("/var"),
        "usr_local": sorted(os.listdir("/usr/local")) if exists("/usr/local") else None,
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "writable": writable,
        "status": open("/proc/self/status").read(),
    }


def test_worker_sees_an_allow_list(shared_worker):
    """Does the worker see only the runtime, system libraries, starter and its scratch, read-only but scratch?"""
    view = shared_worker.probe(_source(probe_view), "probe_view")
    extra = set(view["root"]) - {
        "bin",
        "sbin",
        "lib",
        "lib64",
        "lib32",
        "libx32",
        "usr",
        "etc",
        "proc",
        "dev",
        "sys",
        "segkit",
        "scratch",
        "tmp",
    }
    # The Python runtime's own prefix may start anywhere (here under /root); nothing else may appear.
    runtime_tops = {Path(p).parts[1] for p in (sys.prefix, sys.base_prefix)}
    assert extra <= runtime_tops, extra
    assert (
        not any(view[k] for k in ("home", "srv", "opt", "mnt", "var")) or {"home", "srv", "opt", "var"} & runtime_tops
    )
    assert {"passwd", "group", "ld.so.cache"} <= set(view["etc"]) and "shadow" not in view["etc"]
    assert "resolv.conf" not in view["etc"] and "hosts" not in view["etc"]
    assert view["writable"] == {
        "/usr/x": False,
        "/etc/x": False,
        "/x": False,
        "/segkit/starter/x.py": False,
        "/proc/x": False,
        "/scratch/x": True,
        "/tmp/y": True,
    }
    assert len(view["pids"]) <= 3  # bwrap's init, the worker (and at most one helper): no host process


def test_worker_has_no_privileges(shared_worker):
    """Does the worker run with no capabilities, no new privileges, as an unprivileged uid?"""
    view = shared_worker.probe(_source(probe_view), "probe_view")
    status = dict(line.split(":\t", 1) for line in view["status"].splitlines() if ":\t" in line)
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Uid"].split()[0] != "0"


def test_worker_is_isolated(shared_worker):
    """Does the worker run as its own user, without network, unable to see the repository?"""
    env = shared_worker.probe(_source(probe_environment), "probe_environment", (str(REPO_ROOT),))
    assert env["uid"] != 0
    assert env["repo_visible"] is False and env["grader_visible"] is False
    assert env["network"] != "connected"


def test_every_protection_is_active_on_this_host():
    """Does this host (CI, as root) offer every protection, so that grading is not refused?"""
    assert host_sandbox().ok, host_sandbox().reason
    assert [p.name for p in host_sandbox().protections()] == [
        n for n in PROTECTION_TEXT if n in {p.name for p in host_sandbox().protections()}
    ]
    assert set(Worker(sandbox=True).protections) == set(PROTECTION_TEXT)


def test_memory_bomb_is_stopped(worker):
    """Does allocating far beyond the memory cap kill the worker instead of the machine?"""
    with pytest.raises(WorkerError):
        worker.exec_cell("bomb", "import torch\nhog = []\nfor _ in range(100):\n    hog.append(torch.ones(50_000_000))")


def test_memory_watchdog_kills_a_tree_over_the_cap():
    """Without a cgroup (an ordinary user on cgroup v1), does the watchdog stop forked children
    that together pass the cap, each under its own address-space limit?"""
    host = host_sandbox()
    watchdog_host = HostSandbox(True, "", host.bwrap, host.as_root, "watchdog")
    # 1.5 GB: the worker alone boots at about 0.6 GB (torch); the six children pass the cap together.
    w = Worker(slot=8, limits=Limits(cell_timeout=60, memory_mb=1536), host=watchdog_host)
    w.start()
    try:
        with pytest.raises(WorkerOutOfMemory):
            w.exec_cell(
                "bomb",
                "import os, time\nfor _ in range(6):\n    if os.fork() == 0:\n"
                "        b = bytearray(400 * 2**20)\n        b[::4096] = b'x' * len(b[::4096])\n"
                "        time.sleep(60)\n        os._exit(0)\ntime.sleep(60)",
            )
    finally:
        w.stop()
    assert w.out_of_memory and w.peak_memory_bytes > 1536 * 2**20


def test_process_cap_stops_a_fork_bomb(worker):
    """Does forking without end hit the process cap (the cell errors) instead of filling the machine?"""
    result = worker.exec_cell(
        "forks",
        "import os, time\nn = 0\nfor _ in range(2000):\n    pid = os.fork()\n"
        "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    n += 1",
    )
    assert result["status"] == "error" and ("BlockingIOError" in result["error"] or "Resource" in result["error"])


def test_scratch_is_size_capped(worker):
    """Does filling the scratch folder stop at its cap?"""
    result = worker.exec_cell(
        "fill", "with open('/scratch/big', 'wb') as h:\n    for _ in range(40):\n        h.write(b'x' * 2**24)"
    )
    assert result["status"] == "error" and ("No space" in result["error"] or "File too large" in result["error"])


def test_runtime_that_contains_the_kit_is_refused(monkeypatch):
    """Is a Python environment that contains the kit (it would expose it) refused rather than bound?"""
    import grader.sandbox.plan as plan_module

    monkeypatch.setattr(plan_module, "runtime_prefixes", lambda: [str(REPO_ROOT.parent)])
    plan = SandboxPlan(host_sandbox(), Limits())
    with pytest.raises(SandboxUnavailable, match="contains"):
        plan.command(["true"])
    plan.cleanup()


def _without_user_namespaces(command: list[str]) -> list[str]:
    """Run `command` where no new user namespace can be made (as with user.max_user_namespaces=0)."""
    quoted = " ".join(f"'{part}'" for part in command)
    return [
        "unshare",
        "--user",
        "--map-root-user",
        "/bin/sh",
        "-c",
        f"echo 0 > /proc/sys/user/max_user_namespaces && exec {quoted}",
    ]


def test_grading_refuses_without_user_namespaces(tmp_path):
    """Where user namespaces are disabled and the bubblewrap layer is required
    (SEGKIT_SANDBOX_LAYER=bubblewrap), does `python -m grader` refuse, name the setting in the way
    and the escape hatch, and grade nobody? (Without the requirement it grades in the Landlock
    layer: tests/test_sandbox_layers.py.)"""
    submitted = tmp_path / "submitted" / "alice" / "patches"
    submitted.mkdir(parents=True)
    (submitted / "patches.ipynb").write_bytes((REPO_ROOT / "solutions" / "patches" / "patches.ipynb").read_bytes())
    base = [sys.executable, "-m", "grader", str(tmp_path / "submitted"), "--out", str(tmp_path / "grades"), "-j", "1"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), SEGKIT_SANDBOX_LAYER="bubblewrap")
    refused = subprocess.run(_without_user_namespaces(base), capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "refusing to grade" in refused.stderr and "user.max_user_namespaces" in refused.stderr
    assert "--unsafe-no-sandbox" in refused.stderr
    assert not (tmp_path / "grades" / "results").exists()


def test_unsafe_runs_are_marked_in_every_report():
    """Does a result graded with --unsafe-no-sandbox say so in its Markdown and HTML feedback and the run report?"""
    import dataclasses

    from grader.report import feedback_html, feedback_markdown, protections_text
    from grader.results import SubmissionResult
    from grader.sandbox import active_protections

    result = SubmissionResult(
        student_id="alice", assignment="patches", total=1.0, max_points=2.0, unsafe_no_sandbox=True
    )
    assert "--unsafe-no-sandbox" in feedback_markdown(result) and "--unsafe-no-sandbox" in feedback_html(result)
    assert "unsafe" not in feedback_markdown(dataclasses.replace(result, unsafe_no_sandbox=False))
    text = protections_text(active_protections(sandbox=False), unsafe=True)
    assert "--unsafe-no-sandbox" in text and "NOT active: `filesystem_allowlist`" in text


def test_old_no_sandbox_flag_is_refused(capsys):
    """Is the old, hidden --no-sandbox spelling gone: refused as an unknown option, so only the explicit
    --unsafe-no-sandbox can turn the sandbox off?"""
    from grader.cli import main

    with pytest.raises(SystemExit):
        main(["--no-sandbox", str(REPO_ROOT / "does-not-matter")])
    assert "unrecognized arguments: --no-sandbox" in capsys.readouterr().err


def test_cgroup_v2_caps_are_written_where_root_has_v2(tmp_path, monkeypatch):
    """On a cgroup v2 host (every current distribution) as root, does the plan enable the memory and pids
    controllers under a segkit parent and write memory.max, memory.swap.max and pids.max for the worker?
    (This host has cgroup v1: the cgroupfs is a folder of plain files here, so only the writes are checked.)"""
    import grader.sandbox.caps as caps

    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("cpu\n")
    monkeypatch.setattr(caps, "CGROUP_ROOT", tmp_path)
    parent = caps.cgroup_v2_parent()
    assert parent == tmp_path / "segkit"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +pids"
    plan = SandboxPlan(HostSandbox(True, "", "bwrap", True, "cgroup-v2"), Limits(memory_mb=1500, max_processes=77))
    plan._make_cgroups()
    (group,) = plan.cgroups
    assert group.parent == parent
    assert (group / "memory.max").read_text() == str(1500 * 2**20) and (group / "pids.max").read_text() == "77"
    (group / "memory.peak").write_text("123456")
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert plan.peak_memory_bytes() == 123456 and plan.out_of_memory()


def test_systemd_scope_wraps_the_worker_without_root(monkeypatch):
    """On cgroup v2 without root, does the worker start inside a systemd user scope with MemoryMax and TasksMax?"""
    host = host_sandbox()
    plan = SandboxPlan(HostSandbox(True, "", host.bwrap, False, "systemd"), Limits(memory_mb=900, max_processes=50))
    try:
        argv, _ = plan.command(["true"])
    finally:
        plan.cleanup()
    assert argv[:4] == ["systemd-run", "--user", "--scope", "--quiet"]
    assert "MemoryMax=900M" in argv and "TasksMax=50" in argv and "MemorySwapMax=0" in argv
    assert argv[argv.index("--") + 1] == host.bwrap


# -- workers forked from the slot's pre-imported template ----------------------------------------

LEAVE_TRACES = """
import os, socket, time
open('/scratch/left-behind', 'w').write('secret')
open('/dev/shm/left-behind', 'w').write('secret')
listener = socket.socket(socket.AF_UNIX)
listener.bind('\\0segkit-left-behind')
listener.listen()
if os.fork() == 0:  # a daemon that outlives the cell, in a session of its own
    os.setsid()
    if os.fork() == 0:
        time.sleep(120)
    os._exit(0)
"""

LOOK_FOR_TRACES = """
import os, socket
found = [p for p in ('/scratch/left-behind', '/dev/shm/left-behind') if os.path.exists(p)]
try:
    socket.socket(socket.AF_UNIX).connect('\\0segkit-left-behind')
    found.append('abstract socket')
except OSError:
    pass
pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
"""


def _template_worker(slot: int) -> Worker:
    w = Worker(slot=slot, limits=Limits(cell_timeout=20, probe_timeout=20, memory_mb=2048))
    w.start()
    assert w.started_from_template
    return w


def test_a_forked_worker_sees_nothing_of_the_one_before():
    """Does a worker forked from the slot's template start clean: no file, shared-memory file, socket
    or process left by the previous submission's worker, which forked from the same template?"""
    first = _template_worker(11)
    try:
        assert first.exec_cell("traces", LEAVE_TRACES)["status"] == "ok"
        assert first.exec_cell("look", LOOK_FOR_TRACES)["status"] == "ok"
        seen_by_first = first.probe(_source(probe_value), "probe_value", ("found",))
        pids_of_first = first.probe(_source(probe_value), "probe_value", ("pids",))
    finally:
        first.stop()
    assert seen_by_first == ["/scratch/left-behind", "/dev/shm/left-behind", "abstract socket"]  # the probe can see
    assert len(pids_of_first) >= 3  # init, the worker and the daemon
    second = _template_worker(11)
    try:
        assert second.exec_cell("look", LOOK_FOR_TRACES)["status"] == "ok"
        assert second.probe(_source(probe_value), "probe_value", ("found",)) == []
        assert second.probe(_source(probe_value), "probe_value", ("pids",)) == [1, 2]
    finally:
        second.stop()


def probe_reach_template(ns):
    import os
    import subprocess

    status = dict(line.split(":\t", 1) for line in open("/proc/1/status").read().splitlines() if ":\t" in line)
    try:
        open("/proc/1/mem", "rb").read(1)
        init_memory = "readable"
    except OSError as exc:
        init_memory = type(exc).__name__
    userns = subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode
    return {
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "init_caps": int(status["CapEff"], 16) | int(status["CapPrm"], 16) | int(status["CapBnd"], 16),
        "init_memory": init_memory,
        "userns": userns,
        "cgroup": open("/proc/self/cgroup").read(),
    }


def test_the_template_is_out_of_a_forked_workers_reach():
    """Can a forked worker see the template, read its pid-namespace init's memory, hold a capability
    anywhere in its namespace, or make a user namespace? Is it under the submission's own cgroup?"""
    w = _template_worker(12)
    try:
        view = w.probe(_source(probe_reach_template), "probe_reach_template")
    finally:
        w.stop()
    assert view["pids"] == [1, 2]  # its init and itself: no template, no host process
    assert view["init_caps"] == 0
    assert view["init_memory"] in ("PermissionError", "OSError")
    assert view["userns"] != 0
    if host_sandbox().caps.startswith("cgroup"):
        assert "segkit-" in view["cgroup"]


def test_workers_start_from_scratch_when_the_template_is_off(monkeypatch):
    """With SEGKIT_WORKER_TEMPLATE=0, or when forking fails, is the worker started from scratch instead?"""

    def assert_starts_from_scratch():
        w = Worker(slot=13, limits=Limits(cell_timeout=20))
        w.start()
        try:
            assert not w.started_from_template
            assert w.exec_cell("a", "x = 1")["status"] == "ok"
        finally:
            w.stop()

    monkeypatch.setenv("SEGKIT_WORKER_TEMPLATE", "0")
    assert_starts_from_scratch()
    monkeypatch.delenv("SEGKIT_WORKER_TEMPLATE")

    def broken_fork(self, *args, **kwargs):
        raise WorkerError("fork refused")

    monkeypatch.setattr(WorkerTemplate, "fork", broken_fork)
    assert_starts_from_scratch()


# -- the package's seams: a pure plan, one command line and environment, each layer's protections --


def test_building_a_plan_changes_nothing_on_the_host(monkeypatch):
    """Does building and rendering a worker's plan run without making a folder, writing a file,
    claiming a uid or creating a cgroup (all of which happen only when it is executed)?"""
    from grader.sandbox import bubblewrap, plan

    def forbidden(*args, **kwargs):
        raise AssertionError("building a plan touched the host")

    for module, name in ((os, "mkdir"), (os, "makedirs"), (os, "chmod"), (os, "chown"), (os, "symlink")):
        monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setattr(Path, "write_text", forbidden)
    monkeypatch.setattr("tempfile.mkdtemp", forbidden)
    mounts = plan.bubblewrap_plan(Limits(scratch_mb=300), template=True)
    argv = bubblewrap.render(mounts, "/usr/bin/bwrap")
    assert argv[0] == "/usr/bin/bwrap" and "--cap-add" in argv
    joined = " ".join(argv)
    assert f"--size {300 * 2**20} --perms 0700 --tmpfs {plan.SANDBOX_SCRATCH}" in joined
    assert "--remount-ro /dev" in joined and joined.index("--remount-ro /dev") > joined.index("--dev /dev")
    assert f"{plan.SANDBOX_KIT}/sandbox/protocol.py" in argv and f"{plan.SANDBOX_KIT}/worker.py" in argv


def test_every_start_gets_the_same_environment(tmp_path):
    """Is the worker's environment written once: does a worker started with --unsafe-no-sandbox get
    the same variables (MALLOC_ARENA_MAX, MPLCONFIGDIR included) as the sandboxed ones?"""
    from grader.sandbox.plan import SANDBOX_SCRATCH, bubblewrap_plan, worker_environment

    w = Worker(sandbox=False, limits=Limits(cell_timeout=20))
    w.start()
    try:
        w.exec_cell("env", "import os\nenv = dict(os.environ)")
        unsafe = w.probe(_source(probe_value), "probe_value", ("env",))
    finally:
        w.stop()
    sandboxed = dict(bubblewrap_plan(Limits()).env)
    assert set(sandboxed) == set(worker_environment(SANDBOX_SCRATCH)) == set(unsafe) - {"PWD", "LC_CTYPE"}
    assert {"MALLOC_ARENA_MAX", "MPLCONFIGDIR"} <= set(unsafe)


@pytest.mark.parametrize("abi, as_root", [(4, False), (7, True)])
def test_the_landlock_layer_reports_what_it_gives_up(abi, as_root):
    """Does the Landlock layer list its own mechanisms (Landlock ABI, seccomp, spare uid or the grader's
    uid) and report the namespace-only protections as NOT active, saying they need user namespaces?"""
    from grader.report import protections_text
    from grader.sandbox import BASE_PROTECTIONS, Protection
    from grader.sandbox.protections import NAMESPACE_ONLY

    host = HostSandbox(
        True, "", None, as_root, "cgroup-v2" if as_root else "watchdog", layer="landlock", landlock_abi=abi
    )
    provided = host.protections()
    assert [p.name for p in provided] == [n for n in PROTECTION_TEXT if n not in (*BASE_PROTECTIONS, *NAMESPACE_ONLY)]
    mechanisms = {p.name: p.mechanism for p in provided}
    assert f"Landlock ABI {abi}" in mechanisms["filesystem_allowlist"]
    assert ("Landlock denies TCP" in mechanisms["no_network"]) == (abi >= 4)
    assert ("spare uid" in mechanisms["unprivileged_user"]) == as_root
    text = protections_text([Protection(n, PROTECTION_TEXT[n]) for n in BASE_PROTECTIONS] + provided)
    for name in NAMESPACE_ONLY:
        assert f"- NOT active: `{name}`" in text and f"`{name}`: {PROTECTION_TEXT[name]}" in text
        assert "(user namespaces)" in PROTECTION_TEXT[name]


@pytest.mark.slow
@pytest.mark.parametrize("who", ["user", "root"])
def test_landlock_layer_workers_without_user_namespaces(who):
    """Where no user namespace can be made, does grading pick the Landlock layer, fork workers from the
    slot's template (as the grading uid, or as root a spare uid), deny them the kit's solutions, /proc,
    /dev/shm, /tmp, TCP, signals out and user namespaces, kill what a worker leaves running, remove its
    folder, and stop a fork bomb and an over-full scratch folder; and does a worker started from scratch
    get the same walls?"""
    if os.geteuid() != 0:
        pytest.skip("disabling user namespaces and switching uids need root (CI runs as root)")
    import shutil
    import tempfile

    from sandbox_helpers import TEST_UID, as_user_command, copy_kit, without_user_namespaces

    # A copy of the kit: as root this layer closes solutions/ and assignments/ to other users.
    base = Path(tempfile.mkdtemp(prefix="segkit-landlock-"))
    os.chmod(base, 0o755)
    kit = base / "kit"
    copy_kit(kit)
    if who == "user":
        subprocess.run(["chown", "-R", f"{TEST_UID}:{TEST_UID}", str(base)], check=True)
    script = [sys.executable, str(kit / "tests" / "landlock_worker_script.py"), str(kit)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8", "PYTHONPATH": str(kit)}
    argv, stage = as_user_command(script, uid=TEST_UID if who == "user" else 0, env=env)
    try:
        run = subprocess.run(without_user_namespaces(argv), capture_output=True, text=True, timeout=600, cwd=kit)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["layer"] == "landlock" and report["as_root"] == (who == "root") and report["forked"]
    assert report["attacks_cell"] == "ok" and all(v != "ok" for v in report["seen"].values()), report["seen"]
    assert report["uid"] == TEST_UID if who == "user" else 61000 <= report["uid"] < 62000
    assert not report["daemon_alive"] and not report["folder_left"] and report["second_sees"] == []
    # Stopped: by RLIMIT_NPROC or a cgroup (the cell fails), or by the watchdog (killed, over the process
    # cap or over the memory cap first: forked children's shared pages count in each one's resident size).
    assert report["fork_bomb"] == "error" or report["fork_bomb"].startswith("killed"), report["fork_bomb"]
    assert "scratch cap" in report["fill_scratch"], report["fill_scratch"]
    # Started from scratch (SEGKIT_WORKER_TEMPLATE=0): the same walls, and nothing outlives it either.
    assert not report["scratch_forked"] and all(v != "ok" for v in report["scratch_seen"].values())
    assert not report["scratch_daemon_alive"]


def test_refusal_names_both_layers_and_the_commands(monkeypatch):
    """Where neither layer can start, does the refusal say why for each and give the commands that
    would enable bubblewrap (AppArmor profile, sysctls, Docker options) and Landlock (lsm=)?"""
    from grader.sandbox import host

    monkeypatch.delenv("SEGKIT_SANDBOX_LAYER", raising=False)
    monkeypatch.setattr(
        host, "_bubblewrap_host", lambda: HostSandbox(False, "bwrap: setting up uid map: denied", "/x/bwrap")
    )
    monkeypatch.setattr(
        host, "_landlock_host", lambda: HostSandbox(False, "Landlock layer: no Landlock", layer="landlock")
    )
    refused = host.host_sandbox.__wrapped__()
    assert not refused.ok and not refused.protections()
    for needed in (
        "setting up uid map",
        "no Landlock",
        "apparmor_parser -r",
        "profile segkit-bwrap /x/bwrap",
        "user.max_user_namespaces=15000",
        "--security-opt seccomp=unconfined",
        "lsm=",
    ):
        assert needed in refused.reason, needed
    monkeypatch.setenv("SEGKIT_SANDBOX_LAYER", "landlock")
    assert host.host_sandbox.__wrapped__().reason == "Landlock layer: no Landlock"  # forced: no fallback
    monkeypatch.setenv("SEGKIT_SANDBOX_LAYER", "docker")
    assert "use one of bubblewrap, landlock" in host.host_sandbox.__wrapped__().reason
