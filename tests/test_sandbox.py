"""The worker sandbox on its own: protocol, isolation, limits, and what can and cannot come back."""

from __future__ import annotations

import os

import pytest
import torch

from grader.notebooks import REPO_ROOT
from grader.sandbox import Limits, ProbeFailed, Worker, WorkerError, WorkerTimeout, host_capabilities


@pytest.fixture
def worker():
    w = Worker(slot=7, limits=Limits(cell_timeout=20, probe_timeout=20, memory_mb=2048))
    w.start()
    yield w
    w.stop()


def probe_value(ns, name):
    return ns[name]


def probe_environment(ns, repo):
    import os
    import socket

    result = {"uid": os.getuid(), "repo_visible": os.path.exists(os.path.join(repo, "solutions")),
              "grader_visible": os.path.exists(os.path.join(repo, "grader", "checks"))}
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
    worker.exec_cell("b", "import torch\nclass T(torch.Tensor):\n    def __eq__(self, o):\n        return True\n"
                          "sub = torch.zeros(3).as_subclass(T)")
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


@pytest.mark.skipif(not host_capabilities()["namespaces"], reason="host offers no namespaces (needs root + unshare)")
def test_worker_is_isolated(worker):
    """Does the worker run as its own user, without network, unable to see the repository?"""
    env = worker.probe(_source(probe_environment), "probe_environment", (str(REPO_ROOT),))
    assert env["uid"] != 0 and env["uid"] != os.getuid()
    assert env["repo_visible"] is False and env["grader_visible"] is False
    assert env["network"] != "connected"


@pytest.mark.skipif(not host_capabilities()["cgroup_memory"], reason="no writable memory cgroup on this host")
def test_memory_bomb_is_stopped(worker):
    """Does allocating far beyond the memory cap kill the worker instead of the machine?"""
    with pytest.raises(WorkerError):
        worker.exec_cell("bomb", "import torch\nhog = []\nfor _ in range(100):\n    hog.append(torch.ones(50_000_000))")
