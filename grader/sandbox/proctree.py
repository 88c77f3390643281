"""What the grader reads about a worker's process tree through the host's /proc: members, resident
memory, bytes parked in its tmpfs mounts or scratch folder, CPU time."""

from __future__ import annotations

import os
from collections.abc import Iterator

# The only writable mounts a bubblewrap worker has (read through each process's own mount namespace).
WORKER_TMPFS = ("/scratch", "/dev/shm")


def _stat_fields() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, the fields of /proc/<pid>/stat after the command name) of every process this user may read."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                yield int(entry.name), handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue


def process_table() -> dict[int, tuple[int, int]]:
    """{pid: (parent pid, resident bytes)} of every live process this user may read (zombies, dead
    and waiting to be reaped, are left out: there is nothing left to kill or count)."""
    page = os.sysconf("SC_PAGE_SIZE")
    return {pid: (int(fields[1]), int(fields[21]) * page) for pid, fields in _stat_fields() if fields[0] != b"Z"}


def host_devices() -> set[int]:
    """Devices of the grader's own view of the worker's tmpfs paths: never counted as the worker's."""
    devices = set()
    for path in WORKER_TMPFS:
        try:
            devices.add(os.stat(path).st_dev)
        except OSError:
            pass
    return devices


def tree_tmpfs_bytes(pids: list[int], host_devices: set[int]) -> int:
    """Bytes held in the worker's own tmpfs mounts (/scratch, /dev/shm), read through the mount
    namespace of each process of its tree (each mount counted once). tmpfs pages are memory that
    no process's resident size shows, so the watchdog adds them to the tree's."""
    seen: set[int] = set()
    total = 0
    for pid in pids:
        for path in WORKER_TMPFS:
            where = f"/proc/{pid}/root{path}"
            try:
                device = os.stat(where).st_dev
                if device in seen or device in host_devices:
                    continue
                stats = os.statvfs(where)
            except OSError:
                continue
            seen.add(device)
            total += (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    return total


def folder_bytes(folder: str) -> int:
    """Bytes of every file under `folder` (a Landlock worker's scratch on the host's disk)."""
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(parent, name)).st_blocks * 512
            except OSError:
                pass
    return total


def tree_pids(root_pid: int, table: dict[int, tuple[int, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        if pid in table:
            found.append(pid)
        stack += children.get(pid, [])
    return found


def tree_resident_bytes(root_pid: int) -> int:
    """Resident memory of `root_pid` and all its descendants."""
    table = process_table()
    return sum(table[pid][1] for pid in tree_pids(root_pid, table))


def tree_memory_bytes(root_pid: int, host_devices: set[int]) -> int:
    """What the watchdog caps: the tree's resident memory plus what it parked in its tmpfs mounts."""
    table = process_table()
    pids = tree_pids(root_pid, table)
    return sum(table[pid][1] for pid in pids) + tree_tmpfs_bytes(pids, host_devices)


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU time (user + system, own and reaped children's) of `root_pid` and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, int] = {}
    for pid, fields in _stat_fields():
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0)
        stack += children.get(pid, [])
    return total / tick
