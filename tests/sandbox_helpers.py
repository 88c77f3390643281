"""Helpers of the sandbox tests: a loopback listener, and running a command as an ordinary uid.

Running as an ordinary (unprivileged) uid, the way most instructors grade:

The tests run as root, and the kit's virtual environment usually sits under /root (mode 0700),
which an ordinary user cannot traverse. Instead of changing /root's permissions, the command runs
in a private mount namespace where each folder above the Python runtime that the uid cannot
traverse is replaced by an empty tmpfs holding only the runtime (bind-mounted back at its own
path); then `setpriv` drops to the uid with no groups and no capabilities. The host is left as it was.
"""

from __future__ import annotations

import os
import shlex
import socket
import stat
import sys
import tempfile
import threading
from pathlib import Path

TEST_UID = 62500  # no passwd entry needed; outside the grader's worker range (61000-61999)


def runtime_paths() -> list[str]:
    paths = {sys.prefix, sys.base_prefix, os.path.realpath(sys.executable).rsplit("/bin/", 1)[0]}
    return sorted({os.path.realpath(p) for p in paths})


def _blocking_ancestor(path: str) -> str | None:
    """The highest folder above `path` that others cannot traverse (None if all can)."""
    for parent in reversed(Path(path).parents):
        if parent != Path("/") and not os.stat(parent).st_mode & stat.S_IXOTH:
            return str(parent)
    return None


def as_user_command(argv: list[str], *, uid: int = TEST_UID, env: dict[str, str]) -> tuple[list[str], str]:
    """(command, staging folder to remove afterwards) running `argv` as `uid` with `env`."""
    stage = tempfile.mkdtemp(prefix="segkit-userstage-")
    lines = ["set -e"]
    blockers: dict[str, list[tuple[str, str]]] = {}
    for index, path in enumerate(runtime_paths()):
        blocker = _blocking_ancestor(path)
        if blocker is None:
            continue
        staged = f"{stage}/{index}"
        os.mkdir(staged)
        lines.append(f"mount --bind {shlex.quote(path)} {shlex.quote(staged)}")
        blockers.setdefault(blocker, []).append((staged, path))
    for blocker, pairs in blockers.items():
        lines.append(f"mount -t tmpfs -o mode=755,size=1m tmpfs {shlex.quote(blocker)}")
        for staged, path in pairs:
            lines.append(f"mkdir -p {shlex.quote(path)} && mount --bind {shlex.quote(staged)} {shlex.quote(path)}")
    environment = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    lines.append(
        f"exec setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=-all -- "
        f"env -i {environment} " + " ".join(shlex.quote(a) for a in argv)
    )
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", "\n".join(lines)], stage


WITHOUT_USER_NAMESPACES = """
import ctypes, os, sys
ready_read, ready_write = os.pipe()
go_read, go_write = os.pipe()
child = os.fork()
if child == 0:
    if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:
        os._exit(97)
    os.write(ready_write, b"u")
    os.read(go_read, 1)
    with open("/proc/sys/user/max_user_namespaces", "w") as handle:
        handle.write("0")
    os.execvp(sys.argv[1], sys.argv[1:])
os.read(ready_read, 1)
for name in ("uid_map", "gid_map"):
    with open(f"/proc/{child}/{name}", "w") as handle:
        handle.write("0 0 65536")
os.write(go_write, b"g")
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def without_user_namespaces(argv: list[str]) -> list[str]:
    """Run `argv` in a user namespace (uids 0-65535 mapped to themselves) where no further one can
    be made, as with user.max_user_namespaces=0 (no newuidmap needed); needs root. bubblewrap cannot
    start there: grading picks the Landlock layer."""
    return [sys.executable, "-c", WITHOUT_USER_NAMESPACES, *argv]


class LoopbackListener:
    """TCP and UDP servers on the host's loopback (one port) recording anything a submission sends."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.settimeout(0.5)
        self.port = self.server.getsockname()[1]
        self.datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.datagrams.bind(("127.0.0.1", self.port))
        self.datagrams.settimeout(0.5)
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve, daemon=True),
            threading.Thread(target=self._serve_datagrams, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.received.append(connection.recv(100) or b"(connected)")
            connection.close()

    def _serve_datagrams(self):
        while not self._stop.is_set():
            try:
                self.received.append(self.datagrams.recv(100))
            except OSError:
                continue

    def close(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self.server.close()
        self.datagrams.close()


def copy_kit(target: Path | str):
    """A copy of this kit (tracked sources, no .git or build outputs) at `target`."""
    import shutil

    root = Path(__file__).resolve().parent.parent
    everywhere = {".git", "__pycache__", ".pytest_cache"}
    top_level = {"build", "grades", "dist"}  # outputs; segkit/build (the build tools) is source

    def ignore(folder, names):
        return [n for n in names if n in everywhere or (Path(folder) == root and n in top_level)]

    shutil.copytree(root, target, ignore=ignore)


def main(argv: list[str]) -> int:
    """`python tests/sandbox_helpers.py COMMAND...` (as root): run COMMAND as TEST_UID in a fresh copy
    of the kit owned by that uid, e.g. `make grade ASSIGNMENT=patches VENV_ROOT=/root/.cache/segkit`
    to see what an ordinary user's grading run reports."""
    import shutil
    import subprocess

    base = tempfile.mkdtemp(prefix="segkit-asuser-")
    os.chmod(base, 0o755)
    kit, home = os.path.join(base, "kit"), os.path.join(base, "home")
    copy_kit(kit)
    os.mkdir(home)
    subprocess.run(["chown", "-R", f"{TEST_UID}:{TEST_UID}", base], check=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "PYTHONPATH": kit}
    command, stage = as_user_command(argv, env=env)
    try:
        return subprocess.run(command, cwd=kit).returncode
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
