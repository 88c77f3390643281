"""Landlock: a process restricts itself, and everything it later forks or executes, to an allow-list.

Three system calls through ``ctypes`` (their numbers are the same on every architecture), no
dependency. What one restriction covers depends on the kernel's Landlock ABI:

- ABI 1 (Linux 5.13): file access (read, write, execute, list, create, remove) beneath allowed
  folders; moving or linking a file into another folder is always refused (no REFER right yet);
- ABI 2 (5.19): REFER, so files may move between allowed folders;
- ABI 3 (6.2): truncation (without it ``truncate(path)`` works anywhere: seccomp closes that gap);
- ABI 4 (6.7, Ubuntu 24.04): TCP bind and connect (denied here: no port is allowed);
- ABI 5 (6.10): ioctl on device files;
- ABI 6 (6.12): scopes: no signal to, and no abstract unix socket of, a process outside the
  domain (seccomp stands in for the signal scope below 6);
- ABI 7 (6.15): audit logging flags for ``restrict_self``.

Landlock always stops a restricted process from ptracing (or reading /proc/PID/mem, environ, fd
of) a process outside its domain. Restrictions stack: a process that is already restricted and
restricts itself again gets the intersection, so a worker template can restrict itself to a
scratch root and each forked worker to its own subfolder, which its siblings then cannot reach.
Landlock does not cover file metadata (chmod, chown, utimes, xattrs), connecting to a named unix
socket, or UDP; ``seccomp.py`` covers those.

A restriction applies to the calling thread only (and to what it forks and executes later), so
``restrict`` refuses to run in a process with more than one thread.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH, RULE_NET_PORT = 1, 2
PR_SET_NO_NEW_PRIVS = 38
RESTRICT_SELF_LOG_SAME_EXEC_OFF = 1 << 0  # ABI 7: no audit record per denial of this program

# Filesystem rights (linux/landlock.h), with the ABI that introduced each.
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

FS_ABI1 = (1 << 13) - 1
FS_BY_ABI = {1: FS_ABI1, 2: FS_ABI1 | FS_REFER, 3: FS_ABI1 | FS_REFER | FS_TRUNCATE}
FS_ALL = FS_ABI1 | FS_REFER | FS_TRUNCATE | FS_IOCTL_DEV
READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
# Read-write folders: everything but creating device nodes (which also needs CAP_MKNOD).
WRITE = (
    FS_WRITE_FILE
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_MAKE_SOCK
    | FS_MAKE_FIFO
    | FS_MAKE_SYM
    | FS_REFER
    | FS_TRUNCATE
    | FS_IOCTL_DEV
)
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV  # a rule on a file


class LandlockError(OSError):
    """Landlock is missing, disabled, or refused the ruleset (the message says which)."""


class _RulesetAttr(ctypes.Structure):
    # Always the ABI 6 layout: the kernel accepts a longer struct whose unknown tail is zero.
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the kernel's header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def abi_version() -> int:
    """The kernel's Landlock ABI (1 and up), or 0 where Landlock is not built in or not enabled."""
    result = _libc().syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return int(result) if result > 0 else 0


def unavailable_reason() -> str:
    """Why abi_version() is 0, in words an instructor can act on ("" when Landlock works)."""
    libc = _libc()
    if libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION)) > 0:
        return ""
    code = ctypes.get_errno()
    if code == errno.EOPNOTSUPP:
        return (
            "Landlock is built into this kernel but disabled: add `landlock` to the `lsm=` kernel "
            "parameter (see /sys/kernel/security/lsm) and reboot"
        )
    if code == errno.ENOSYS:
        return "this kernel has no Landlock (Linux 5.13 or later with CONFIG_SECURITY_LANDLOCK=y is needed)"
    return f"Landlock is not usable here ({os.strerror(code)}; a container's seccomp profile may forbid it)"


@dataclass(frozen=True)
class Restriction:
    """What one call to ``restrict`` enforced."""

    abi: int
    handled_fs: int
    handled_net: int
    scoped: int
    missing: tuple[str, ...]  # allow-listed paths that did not exist (nothing was granted for them)

    @property
    def tcp_denied(self) -> bool:
        return self.handled_net == NET_BIND_TCP | NET_CONNECT_TCP

    @property
    def signals_scoped(self) -> bool:
        return bool(self.scoped & SCOPE_SIGNAL)

    @property
    def abstract_unix_scoped(self) -> bool:
        return bool(self.scoped & SCOPE_ABSTRACT_UNIX_SOCKET)


def handled_rights(abi: int) -> tuple[int, int, int]:
    """(filesystem, network, scope) rights this ABI can restrict, as the kernel's sandboxer.c masks them."""
    if abi < 1:
        return 0, 0, 0
    fs = FS_BY_ABI.get(abi, FS_ALL if abi >= 5 else FS_BY_ABI[3])  # ABI 4 brought no filesystem right
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    return fs, net, scoped


def thread_count() -> int:
    """Threads of this process (/proc must be readable: confine a template with /proc in its plan)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError as exc:
        raise LandlockError(exc.errno, f"cannot count this process's threads ({exc}): allow /proc") from exc


def _check_single_thread() -> None:
    threads = thread_count()
    if threads != 1:
        raise LandlockError(
            errno.EINVAL, f"Landlock restricts only the calling thread, and this process runs {threads} threads"
        )


def _add_path(libc: ctypes.CDLL, ruleset_fd: int, path: str, rights: int) -> bool:
    """Grant `rights` beneath `path` (file rights only, for a file); False if it does not exist."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            rights &= FILE_RIGHTS
        rule = _PathBeneathAttr(rights, fd)
        if libc.syscall(SYS_ADD_RULE, ruleset_fd, RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            code = ctypes.get_errno()
            raise LandlockError(code, f"Landlock refused the rule for {path}: {os.strerror(code)}")
    finally:
        os.close(fd)
    return True


def restrict(
    read_only: tuple[str, ...],
    read_write: tuple[str, ...],
    *,
    deny_tcp: bool = True,
    scope_signals: bool = True,
    scope_abstract_unix: bool = True,
    abi_limit: int | None = None,
    quiet: bool = True,
) -> Restriction:
    """Restrict this process (and what it forks and executes) to reading `read_only` and reading and
    writing `read_write`; deny TCP bind/connect (ABI >= 4) and scope signals and abstract unix
    sockets to its own domain (ABI >= 6). abi_limit: use no feature above that ABI (to behave as an
    older kernel does, e.g. 4 for Ubuntu 24.04). Sets no_new_privs first (Landlock requires it without
    CAP_SYS_ADMIN, and it keeps the restriction across setuid programs). Raises LandlockError."""
    kernel_abi = abi_version()
    if kernel_abi < 1:
        raise LandlockError(errno.ENOSYS, unavailable_reason())
    abi = min(kernel_abi, abi_limit) if abi_limit else kernel_abi
    _check_single_thread()
    fs, net, scoped = handled_rights(abi)
    scope = (SCOPE_SIGNAL if scope_signals else 0) | (SCOPE_ABSTRACT_UNIX_SOCKET if scope_abstract_unix else 0)
    attr = _RulesetAttr(fs, net if deny_tcp else 0, scoped & scope)
    libc = _libc()
    ruleset_fd = libc.syscall(
        SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0)
    )
    if ruleset_fd < 0:
        code = ctypes.get_errno()
        raise LandlockError(code, f"Landlock refused the ruleset: {os.strerror(code)}")
    missing = []
    try:
        for paths, rights in ((read_only, READ), (read_write, READ | WRITE)):
            for path in paths:
                if not _add_path(libc, ruleset_fd, path, rights & fs):
                    missing.append(path)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            raise LandlockError(code, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(code)}")
        flags = RESTRICT_SELF_LOG_SAME_EXEC_OFF if quiet and kernel_abi >= 7 else 0
        if libc.syscall(SYS_RESTRICT_SELF, ruleset_fd, ctypes.c_uint32(flags)) != 0:
            code = ctypes.get_errno()
            raise LandlockError(code, f"landlock_restrict_self: {os.strerror(code)}")
    finally:
        os.close(ruleset_fd)
    return Restriction(abi, attr.handled_access_fs, attr.handled_access_net, attr.scoped, tuple(missing))
