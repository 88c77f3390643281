"""Confinement without namespaces: Landlock, seccomp, rlimits, no_new_privs and, as root, a spare uid.

The sandbox's weaker layer, for hosts where bubblewrap cannot make user namespaces (Ubuntu 23.10
and later without an AppArmor profile, Docker's and Gradescope's default seccomp profile). A
process confines *itself*, so the trusted grader builds a ``Plan`` (plain, frozen data) and the
process that will run student code applies it: in a ``preexec_fn`` before ``exec`` (Landlock and
seccomp survive ``execve``, no_new_privs keeps them) or in a child forked from a pre-imported
worker template. One file per mechanism: ``landlock.py`` (the filesystem allow-list, TCP, signal
and abstract-socket scopes) and ``seccomp.py`` (what Landlock leaves open on older ABIs).

The worker side loads this file, ``landlock.py`` and ``seccomp.py`` by path (``launch.load``): they
import nothing but each other and the standard library. ``python -m grader.sandbox``
prints what this host offers.

    layer = available()                         # what this host offers
    plan = Plan(read_only=standard_read_only(extra=(starter, worker_py)), read_write=(scratch,))
    confined = apply(plan)                      # in the child, before any student code

Restrictions stack: a template applies a plan with its scratch root, and each worker it forks
applies one whose read-write folder is its own subfolder (and which lists nothing the template's
plan does not); a worker then cannot see its siblings' files, signal them or ptrace them.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import resource
import sys
from dataclasses import dataclass, field

from . import landlock, seccomp

# The type checker's names: the worker side imports only the standard library it uses (the block never runs).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Landlock features a plan may require, by the ABI that brought them.
FEATURES = {"filesystem": 1, "refer": 2, "truncate": 3, "tcp": 4, "ioctl_dev": 5, "scopes": 6}
# Files of /etc the runtime reads (loader, locale, time zone, fonts): no passwd, hosts or resolver files.
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "alternatives",
    "fonts",
    "mime.types",
    "os-release",
    "timezone",
)
DEV_READ_WRITE = ("/dev/null", "/dev/zero", "/dev/full")
DEV_READ_ONLY = ("/dev/urandom", "/dev/random")
PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
PREEXEC_FAILED = 71  # exit status of a child whose preexec confinement failed (EX_OSERR)


class ConfinementError(OSError):
    """A plan could not be applied; the process must not go on to run student code."""


@dataclass(frozen=True)
class Layer:
    """What this host offers for confinement without namespaces (``available()``)."""

    landlock_abi: int  # 0: no Landlock
    landlock_reason: str  # why not, when landlock_abi is 0
    seccomp: bool  # a seccomp filter can be installed
    seccomp_reason: str
    root: bool  # root in the initial user namespace (can switch to a spare uid)
    arch: str

    @property
    def usable(self) -> bool:
        """Landlock and seccomp both work: the layer can confine a worker."""
        return self.landlock_abi >= 1 and self.seccomp

    def features(self) -> tuple[str, ...]:
        return tuple(name for name, abi in FEATURES.items() if self.landlock_abi >= abi)

    def protections(self) -> tuple[str, ...]:
        """What a worker confined here gets, one sentence each (for report.md)."""
        if not self.usable:
            return ()
        items = [
            f"filesystem allow-list by Landlock (ABI {self.landlock_abi}): read-only runtime, system libraries and "
            "starter package, read-write scratch only",
            "no new privileges; system calls for namespaces, mounts, ptrace, process memory, keyrings, bpf, "
            "perf, io_uring and kernel modules refused by seccomp",
            "network: only unix sockets can be created (seccomp), no connect()"
            + ("; TCP bind/connect also denied by Landlock" if self.landlock_abi >= 4 else ""),
            "signals only within the worker's own domain (Landlock scope)"
            if self.landlock_abi >= 6
            else "signals only to the worker's own process group (seccomp)",
            "no ptrace or /proc access to processes outside the worker (Landlock)",
            "rlimits for CPU time, address space, file size, open files and processes",
        ]
        if self.root:
            items.append("a spare uid of its own, no capabilities")
        return tuple(items)

    def gives_up(self) -> tuple[str, ...]:
        """What this layer does not provide that bubblewrap does (for report.md)."""
        items = [
            "no /proc of its own: with /proc in the plan, every process's command line and status are visible "
            "(not its memory, environment or files); without it, /proc is absent",
            "no private network namespace: the host's interfaces exist, but no IP socket can be made",
            "file metadata outside the allow-list can be read (stat: existence, size, times), not listed or opened",
            "no private /tmp or /dev/shm: the worker is pointed at its scratch folder instead",
        ]
        if self.landlock_abi < 6:
            items.append("abstract unix sockets are not scoped (connect() is refused instead)")
        if not self.root:
            items.append(
                "the worker runs as the grading user's uid (Landlock, not file modes, keeps it out); "
                "RLIMIT_NPROC counts all of that uid's processes, so the process cap needs a cgroup"
            )
        return tuple(items)


def _trial(action: Callable[[], object]) -> str:
    """Run `action` in a forked child; "" if it worked, else its error message."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        message = b""
        try:
            action()
        except BaseException as exc:  # anything: the parent only reads the message
            message = str(exc).encode()[:2000] or type(exc).__name__.encode()
        os.write(write_fd, message)
        os._exit(0)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 4096):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return f"the trial process died ({os.waitstatus_to_exitcode(status)})"
    return b"".join(chunks).decode("utf-8", "replace")


def root_in_initial_namespace() -> bool:
    """Real root (not root of a container's user namespace, which cannot pick uids)."""
    try:
        uid_map = open("/proc/self/uid_map").read().split()
    except OSError:
        return False
    return os.geteuid() == 0 and uid_map == ["0", "0", "4294967295"]


def available() -> Layer:
    """Probe the host: Landlock's ABI, whether a seccomp filter and a Landlock restriction can really
    be installed (each tried in a forked child), and whether we are root. Costs a few ms."""
    abi = landlock.abi_version()
    reason = landlock.unavailable_reason() if abi < 1 else ""
    if abi >= 1:
        reason = _trial(
            lambda: landlock.restrict((), (), deny_tcp=False, scope_signals=False, scope_abstract_unix=False)
        )
        if reason:
            abi = 0
    arch = seccomp.machine()
    seccomp_reason = _trial(lambda: seccomp.install(seccomp.Policy()))
    return Layer(abi, reason, not seccomp_reason, seccomp_reason, root_in_initial_namespace(), arch)


def _runtime_prefixes() -> list[str]:
    paths = {sys.prefix, sys.base_prefix, os.path.realpath(sys.executable).rsplit("/bin/", 1)[0]}
    return sorted(os.path.realpath(p) for p in paths if os.path.isdir(p))


def standard_read_only(extra: tuple[str, ...] = (), *, proc: bool = False) -> tuple[str, ...]:
    """The usual read-only allow-list: the Python runtime's prefixes, /usr without /usr/local (a
    runtime under /usr/local comes back through its prefix), the /lib* and /bin folders, a few /etc
    files, the CPU topology torch reads, random devices, and `extra` (the starter package, the
    worker script). proc=True adds all of /proc (shared view; Landlock still hides other
    processes' memory, environment and descriptors)."""
    paths = list(_runtime_prefixes())
    if os.path.isdir("/usr"):
        paths += [os.path.join("/usr", name) for name in sorted(os.listdir("/usr")) if name != "local"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        path = f"/{name}"
        if os.path.isdir(path) and not os.path.islink(path):
            paths.append(path)
    paths += [f"/etc/{name}" for name in ETC_FILES if os.path.exists(f"/etc/{name}")]
    paths += ["/sys/devices/system/cpu", *DEV_READ_ONLY]
    paths.append("/proc" if proc else "/proc/cpuinfo")  # torch's cpuinfo reads it
    paths += list(extra)
    return tuple(dict.fromkeys(paths))


def standard_read_write(*scratch: str) -> tuple[str, ...]:
    """The read-write allow-list: the worker's scratch folder(s) and the null, zero and full devices."""
    return (*scratch, *DEV_READ_WRITE)


@dataclass(frozen=True)
class Plan:
    """How one process confines itself. Plain data: built by the trusted grader, applied by the child.

    read_only / read_write: folders or files (missing ones are skipped and reported);
    require: Landlock features that must be there (FEATURES), else apply() refuses;
    seccomp: install the seccomp filter;
    signals: "auto" (seccomp confines signals to the own process group where Landlock cannot scope
    them, ABI < 6), "seccomp" (always), "landlock" (scope only; refuse below ABI 6);
    unix_connect: allow connect() on unix sockets (DataLoader workers); off by default;
    uid/gid: as root, switch to this spare uid/gid (no groups, no capabilities) first;
    rlimits: (name, value) pairs, e.g. ("RLIMIT_NPROC", 128), set as soft and hard limits;
    new_session: call setsid() unless this process already leads its own process group;
    abi_limit: use no Landlock feature above this ABI (behave as an older kernel, for tests or a
    mixed fleet; seccomp then stands in where it can)."""

    read_only: tuple[str, ...]
    read_write: tuple[str, ...]
    require: tuple[str, ...] = ("filesystem",)
    seccomp: bool = True
    signals: str = "auto"
    unix_connect: bool = False
    uid: int | None = None
    gid: int | None = None
    rlimits: tuple[tuple[str, int], ...] = ()
    new_session: bool = True
    abi_limit: int | None = None

    def to_json(self) -> str:
        """Plain JSON, e.g. to send a worker's plan to the template that forks it."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """The plan `to_json` wrote (lists back to tuples); unknown keys are refused."""
        fields = json.loads(text)
        for name in ("read_only", "read_write", "require"):
            fields[name] = tuple(fields[name])
        fields["rlimits"] = tuple((str(name), int(value)) for name, value in fields.get("rlimits", ()))
        return cls(**fields)

    def nested(
        self,
        read_write: tuple[str, ...],
        *,
        read_only: tuple[str, ...] | None = None,
        rlimits: tuple[tuple[str, int], ...] | None = None,
    ) -> Plan:
        """The plan of a worker forked from a process confined by this one: `read_write` instead
        (subfolders of this plan's), the same or fewer read-only paths, no uid switch (done already).
        Landlock grants the intersection of both layers, so listing more has no effect."""
        return dataclasses.replace(
            self,
            read_only=self.read_only if read_only is None else read_only,
            read_write=read_write,
            uid=None,
            gid=None,
            rlimits=self.rlimits if rlimits is None else rlimits,
        )


@dataclass(frozen=True)
class Confined:
    """What apply() enforced (plain data; a child can send it back for report.md)."""

    landlock_abi: int
    tcp_denied: bool
    signals: str  # "landlock" | "seccomp" | "none"
    seccomp_instructions: int
    uid: int
    missing: tuple[str, ...] = field(default=())


def _drop_bounding_set(libc: ctypes.CDLL) -> None:
    """Empty the bounding set (needs CAP_SETPCAP, so before the uid switch): nothing executed
    later can regain a capability, whatever file capabilities it carries."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    """Empty the ambient, effective, permitted and inheritable sets."""
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    if libc.capset(header, data) != 0:
        code = ctypes.get_errno()
        raise ConfinementError(code, f"capset: {os.strerror(code)}")


def _switch_uid(plan: Plan, uid: int) -> None:
    gid = plan.gid if plan.gid is not None else uid
    if os.geteuid() != 0:
        raise ConfinementError(1, f"switching to uid {uid} needs root")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # clears the permitted and effective capability sets
    if os.getresuid() != (uid, uid, uid) or os.getgroups():
        raise ConfinementError(1, f"could not switch to uid {uid}")


def apply(plan: Plan) -> Confined:
    """Confine this process as `plan` says, in this order: own session, rlimits, (as root) empty
    bounding set and spare uid, no capabilities, no_new_privs, Landlock, seccomp. Must run in a
    single-threaded process (a preexec_fn, or right after fork). Raises ConfinementError; on error
    the caller must exit, not run student code."""
    if plan.signals not in ("auto", "seccomp", "landlock"):
        raise ConfinementError(1, f"unknown signal confinement {plan.signals!r}")
    abi = landlock.abi_version()
    if plan.abi_limit:
        abi = min(abi, plan.abi_limit)
    missing_features = [name for name in plan.require if abi < FEATURES[name]]
    if plan.signals == "landlock" and abi < 6:
        missing_features.append("scopes")
    if missing_features:
        reason = landlock.unavailable_reason() or f"this kernel's Landlock ABI is {abi}"
        raise ConfinementError(1, f"missing Landlock features {', '.join(missing_features)}: {reason}")
    try:
        threads = landlock.thread_count()
    except landlock.LandlockError as exc:
        raise ConfinementError(exc.errno or 1, str(exc)) from exc
    if threads != 1:
        raise ConfinementError(1, f"confinement needs a single-threaded process, this one runs {threads} threads")
    if plan.new_session and os.getpgid(0) != os.getpid():
        os.setsid()
    for name, value in plan.rlimits:
        resource.setrlimit(getattr(resource, name), (value, value))
    libc = ctypes.CDLL(None, use_errno=True)
    is_root = os.geteuid() == 0
    if is_root:
        _drop_bounding_set(libc)
    if plan.uid is not None:
        _switch_uid(plan, plan.uid)
    _drop_capabilities(libc)
    try:
        restriction = landlock.restrict(
            plan.read_only,
            plan.read_write,
            scope_signals=plan.signals != "seccomp",
            abi_limit=plan.abi_limit,
        )
    except landlock.LandlockError as exc:
        raise ConfinementError(exc.errno or 1, str(exc)) from exc
    signals = "landlock" if restriction.signals_scoped else "none"
    instructions = 0
    if plan.seccomp:
        by_seccomp = plan.signals == "seccomp" or (plan.signals == "auto" and not restriction.signals_scoped)
        policy = seccomp.Policy(
            own_pid=os.getpid() if by_seccomp else None,
            own_pgid=os.getpgid(0) if by_seccomp else None,
            unix_connect=plan.unix_connect,
            truncate_by_path=abi >= FEATURES["truncate"],
        )
        try:
            instructions = seccomp.install(policy)
        except seccomp.SeccompError as exc:
            raise ConfinementError(exc.errno or 1, str(exc)) from exc
        if by_seccomp:
            signals = "seccomp"
    return Confined(restriction.abi, restriction.tcp_denied, signals, instructions, os.getuid(), restriction.missing)


LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.py")


def command(plan: Plan, argv: list[str]) -> list[str]:
    """`argv` started through launch.py, which applies `plan` and then executes it: no preexec_fn
    (unsafe in a process with threads). Costs a small Python start (-I -S) before `argv`'s own."""
    return [sys.executable, "-I", "-S", LAUNCHER, plan.to_json(), *argv]


def preexec(plan: Plan) -> Callable[[], None]:
    """A ``preexec_fn`` for subprocess.Popen that applies `plan`, or writes why not to stderr and
    exits with PREEXEC_FAILED (an exception there would lose the reason). Use with
    start_new_session=True and close_fds=True."""

    def confine() -> None:
        try:
            apply(plan)
        except BaseException as exc:
            os.write(2, f"segkit: the worker could not be confined: {exc}\n".encode())
            os._exit(PREEXEC_FAILED)

    return confine


def main() -> int:
    """What this host offers for confinement without namespaces (`python -m grader.sandbox` prints it)."""
    layer = available()
    print(
        f"Landlock ABI: {layer.landlock_abi or 'none'}"
        + (f" ({layer.landlock_reason})" if layer.landlock_reason else "")
    )
    print(f"Landlock features: {', '.join(layer.features()) or 'none'}")
    print(f"seccomp filters: {'yes' if layer.seccomp else 'no (' + layer.seccomp_reason + ')'}")
    print(f"root in the initial user namespace: {'yes' if layer.root else 'no'}")
    if not layer.usable:
        print("This host cannot confine a worker without namespaces.")
        return 1
    print("A worker confined here gets:")
    for item in layer.protections():
        print(f"  - {item}")
    print("and gives up, against bubblewrap:")
    for item in layer.gives_up():
        print(f"  - {item}")
    return 0


__all__ = [
    "FEATURES",
    "PREEXEC_FAILED",
    "ConfinementError",
    "Confined",
    "Layer",
    "Plan",
    "apply",
    "available",
    "command",
    "preexec",
    "standard_read_only",
    "standard_read_write",
]
