"""Run by tests/test_sandbox.py where no user namespace can be made (the Landlock layer): workers
forked from a slot's template, attacked from inside; prints what was seen as JSON."""

import json
import os
import sys
import time

from grader.sandbox import Limits, Worker, WorkerError, host_sandbox

ATTACKS = """
import os, socket, subprocess, time
open('left-behind', 'w').write('secret')
seen = {}
for name, action in {
    'read solutions': lambda: open(os.path.join(REPO, 'solutions', 'patches', 'patches.ipynb')).read(1),
    'list /proc': lambda: os.listdir('/proc'),
    'write /dev/shm': lambda: open('/dev/shm/segkit-left', 'w').write('x'),
    'write /tmp': lambda: open('/tmp/segkit-landlock-left', 'w').write('x'),
    'tcp connect': lambda: socket.create_connection(('127.0.0.1', 22), timeout=2),
    'kill init': lambda: os.kill(1, 0),
    'user namespace': lambda: subprocess.run(['unshare', '--user', 'true'], check=True, capture_output=True),
}.items():
    try:
        action()
        seen[name] = 'ok'
    except Exception as exc:
        seen[name] = type(exc).__name__
folder = os.getcwd()
daemon = os.fork()
if daemon == 0:  # a daemon in a session of its own, meant to outlive the worker
    os.setsid()
    time.sleep(300)
    os._exit(0)
"""


def alive(pid: int) -> bool:
    """Running (a killed process the template has not reaped yet is a zombie, not alive)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def value(worker, name):
    return worker.probe("def p(ns, n):\n    return ns[n]\n", "p", (name,))


def main():
    host = host_sandbox()
    report = {"layer": host.layer, "as_root": host.as_root, "protections": [p.name for p in host.protections()]}
    limits = Limits(cell_timeout=60, probe_timeout=30, memory_mb=2048, scratch_mb=256, max_processes=64)
    started = time.monotonic()
    first = Worker(slot=5, limits=limits)
    first.start()
    report["first_start_s"] = round(time.monotonic() - started, 2)
    try:
        report["attacks_cell"] = first.exec_cell("attacks", f"REPO = {sys.argv[1]!r}\n" + ATTACKS)["status"]
        report["seen"] = value(first, "seen")
        report["uid"] = first.probe("def p(ns):\n    import os\n    return os.getuid()\n", "p")
        folder, daemon = value(first, "folder"), value(first, "daemon")
    finally:
        first.stop()
    report["daemon_alive"] = alive(daemon)
    report["folder_left"] = os.path.exists(folder)
    started = time.monotonic()
    second = Worker(slot=5, limits=limits)
    second.start()
    report["second_start_s"] = round(time.monotonic() - started, 2)
    report["forked"] = first.started_from_template and second.started_from_template
    try:
        second.exec_cell("look", "import os\nleft = os.listdir('.')")
        report["second_sees"] = value(second, "left")
        try:
            report["fork_bomb"] = second.exec_cell(
                "bomb",
                "import os, time\nfor _ in range(500):\n    if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)",
            )["status"]
        except WorkerError as exc:
            report["fork_bomb"] = f"killed: {exc}"
    finally:
        second.stop()
    third = Worker(slot=5, limits=limits)
    third.start()
    try:
        fill = "for i in range(4):\n    with open(f'big{i}', 'wb') as h:\n        h.write(b'x' * 100 * 2**20)\nimport time\ntime.sleep(10)"
        report["fill_scratch"] = third.exec_cell("fill", fill)["status"]
    except WorkerError as exc:
        report["fill_scratch"] = f"killed: {exc}"
    finally:
        third.stop()
    os.environ["SEGKIT_WORKER_TEMPLATE"] = "0"  # the fallback: a worker started from scratch
    fourth = Worker(slot=5, limits=limits)
    fourth.start()
    try:
        fourth.exec_cell("attacks", f"REPO = {sys.argv[1]!r}\n" + ATTACKS)
        report["scratch_seen"] = value(fourth, "seen")
        report["scratch_forked"] = fourth.started_from_template
        daemon = value(fourth, "daemon")
    finally:
        fourth.stop()
    report["scratch_daemon_alive"] = alive(daemon)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
