"""The Landlock layer (no user namespaces): the worker confines itself on the host's own files.

Executing a plan here: a run folder (0711) holds a read-only copy of the kit's worker side
(``kit/``: worker.py, starter/, sandbox/{protocol,launch,confine,landlock,seccomp}.py, the same
layout as bubblewrap's /segkit) and the scratch root (0700, owned by the worker's uid). The
process that will run student code applies a ``confine.Plan``: read-only the runtime, /usr
without /usr/local, the /lib folders, a few /etc files, the kit copy; read-write its scratch;
no_new_privs, no capabilities, seccomp, and as root a spare uid first. A template's plan also
allows /proc (it counts its threads before each worker confines itself); a worker's does not
(/proc/cpuinfo only), so no worker sees another process's command line.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import caps as caps_module
from . import confine
from .limits import Limits
from .plan import REPO_ROOT, check_runtime, kit_files, worker_environment
from .uids import UidClaim

if TYPE_CHECKING:
    from .host import HostSandbox


def unreachable_runtime() -> str:
    """Why a spare uid could not run this Python ("" if it can): a folder above the runtime that
    others cannot traverse (the venv under /root, say)."""
    for prefix in check_runtime(()):
        for parent in reversed(Path(prefix).parents):
            if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
                return (
                    f"the Python environment {prefix} is under {parent}, which the worker's spare uid cannot "
                    f"enter (mode {oct(os.stat(parent).st_mode & 0o777)}): put the environment elsewhere "
                    f"(e.g. /opt) or allow entry with `chmod o+x {parent}`"
                )
    return ""


def close_to_others(forbidden: tuple[str, ...]) -> None:
    """As root: the kit's solutions/ and hidden checks (assignments/) and the grading folders
    (submissions, results) lose every right of "others", so a spare uid cannot read them even where
    Landlock did not stand in the way (file modes are the second wall of this layer). They stay so:
    grade as the same user afterwards, or give them back with `chmod o+rx`."""
    for folder in (REPO_ROOT / "solutions", REPO_ROOT / "assignments", *map(Path, forbidden)):
        try:
            if folder.is_dir():
                os.chmod(folder, folder.stat().st_mode & ~0o007)
        except OSError:
            pass


def worker_read_only(kit: str, *, proc: bool) -> tuple[str, ...]:
    """What a worker (proc=False) or a template (proc=True) may read: the standard list, the kit copy."""
    return confine.standard_read_only(extra=(kit,), proc=proc)


def copy_kit(kit: Path, *, confine_side: bool = True) -> None:
    """The worker side of the kit, read-only for everyone (a spare uid must read it)."""
    kit.mkdir(mode=0o755)
    for source, inside in kit_files(confine=confine_side):
        target = kit / inside
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if os.path.isdir(source):
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    for parent, folders, files in os.walk(kit):
        for name in folders:
            os.chmod(os.path.join(parent, name), 0o755)
        for name in files:
            os.chmod(os.path.join(parent, name), 0o444)


class LandlockLaunch:
    """One confined process (a worker from scratch, or a slot's template) being executed."""

    def __init__(
        self, host: HostSandbox, limits: Limits, slot: int = 0, forbidden: tuple[str, ...] = (), template: bool = False
    ) -> None:
        self.host, self.limits, self.slot, self.forbidden = host, limits, slot, tuple(forbidden)
        self.template = template
        # RLIMIT_NPROC counts the uid's processes: the grader's own uid needs the watchdog to count.
        self.caps = caps_module.make_caps(host.caps, limits, count_processes=not host.as_root)
        self.run_dir: Path | None = None
        self.uid: int | None = None
        self._claim: UidClaim | None = None

    @property
    def cgroups(self) -> list[Path]:
        return self.caps.cgroups

    def prepare(self) -> None:
        if self.run_dir is not None:
            return
        check_runtime(self.forbidden)
        self.run_dir = Path(tempfile.mkdtemp(prefix="segkit-run-"))
        os.chmod(self.run_dir, 0o711)
        copy_kit(self.run_dir / "kit")
        self.scratch_path.mkdir(mode=0o700)
        if self.host.as_root:
            close_to_others(self.forbidden)
            self._claim = UidClaim.take(self.slot)
            self.uid = self._claim.uid
            os.chown(self.scratch_path, self.uid, self.uid)
        self.caps.prepare()

    @property
    def _folder(self) -> Path:
        """run_dir, which prepare() makes before anything reads it."""
        assert self.run_dir is not None
        return self.run_dir

    @property
    def kit(self) -> str:
        return str(self._folder / "kit")

    @property
    def scratch_path(self) -> Path:
        return self._folder / "scratch"

    @property
    def env(self) -> dict[str, str]:
        return worker_environment(str(self.scratch_path))

    @property
    def cwd(self) -> str:
        return str(self.scratch_path)

    def confine_plan(self) -> confine.Plan:
        """The plan of the process the grader starts (a template, or a from-scratch worker's init):
        /proc readable (it counts its threads before a worker confines itself further)."""
        return confine.Plan(
            worker_read_only(self.kit, proc=True),
            confine.standard_read_write(str(self.scratch_path)),
            uid=self.uid,
        )

    def worker_plan(self, folder: str) -> confine.Plan:
        """The plan a worker applies to itself under its init: its own folder, no /proc."""
        return self.confine_plan().nested(
            confine.standard_read_write(folder), read_only=worker_read_only(self.kit, proc=False)
        )

    def make_worker_folder(self, name: str) -> str:
        folder = self.scratch_path / name
        folder.mkdir(mode=0o700)
        if self.uid is not None:
            os.chown(folder, self.uid, self.uid)
        return str(folder)

    def command(self, inner: list[str]) -> tuple[list[str], Callable[[], None]]:
        """(argv, preexec_fn) that run `inner` confined; use with env, cwd, start_new_session=True."""
        self.prepare()
        procs_files = self.caps.procs_files()
        confine_self = confine.preexec(self.confine_plan())

        def preexec() -> None:
            for procs in procs_files:  # join the caps before anything runs
                with open(procs, "w") as handle:
                    handle.write("0")
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the grader
            confine_self()

        return self.caps.wrap(inner), preexec

    def peak_memory_bytes(self) -> int | None:
        return self.caps.peak_memory_bytes()

    def out_of_memory(self) -> bool:
        return self.caps.out_of_memory()

    def cleanup(self) -> None:
        self.caps.release()
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
        if self._claim is not None:
            self._claim.release()
            self._claim = None
