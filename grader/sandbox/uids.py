"""Spare uids for workers as root: one per live worker or template on this host, even across
grading runs (RLIMIT_NPROC and file permissions are per uid, so sharing one would couple students)."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .errors import WorkerError

BASE_UID = 61000  # as root, workers take a free uid in [BASE_UID, BASE_UID + UID_RANGE)
UID_RANGE = 1000
UID_LOCK_DIR = Path("/run/segkit-uids") if Path("/run").is_dir() else Path("/tmp/segkit-uids")


def uids_mapped() -> bool:
    """Are the spare uids usable here (root, with them in this user namespace's uid map)?"""
    if os.geteuid() != 0:
        return False
    try:
        lines = [line.split() for line in Path("/proc/self/uid_map").read_text().splitlines()]
    except OSError:
        return False
    end = BASE_UID + UID_RANGE
    return any(int(inside) <= BASE_UID and int(inside) + int(count) >= end for inside, _, count in lines)


@dataclass
class UidClaim:
    uid: int
    _lock: TextIO | None

    @classmethod
    def take(cls, slot: int) -> UidClaim:
        """A uid no other live worker on this host uses, held by a file lock until release()."""
        UID_LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        for offset in range(UID_RANGE):
            uid = BASE_UID + (slot + offset) % UID_RANGE
            handle = open(UID_LOCK_DIR / f"{uid}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            return cls(uid, handle)
        raise WorkerError("no free worker uid")

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # releases the flock: the uid is free again
            self._lock = None
