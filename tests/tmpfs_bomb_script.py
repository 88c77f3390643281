"""Run by tests/test_tmpfs_memory.py (as root or as an ordinary uid): does memory parked in a worker's tmpfs
count against its memory cap? Prints one JSON line: {"caps", "baseline_mb", "control", "parked"}."""

import json
import sys

from grader.harness import probe_source
from grader.sandbox import Limits, Worker, WorkerError, host_sandbox

CAP_MB, PARK_MB, MARGIN_MB = 1800, 450, 150


def probe_fill(ns, park_mb, allocate_mb):
    import time

    block = b"p" * (1 << 20)
    left = park_mb
    for where in ("/dev/shm/p0", "/scratch/p1", "/scratch/p2"):
        size = min(left, 60 if where.startswith("/dev/shm") else 200)
        with open(where, "wb") as handle:
            for _ in range(size):
                handle.write(block)
        left -= size
    hog = bytearray(allocate_mb << 20)
    for i in range(0, len(hog), 4096):
        hog[i] = 1
    time.sleep(0.5)  # the watchdog polls every 50 ms
    return len(hog) >> 20


def run(park_mb: int, allocate_mb: int) -> str:
    worker = Worker(slot=7, limits=Limits(memory_mb=CAP_MB, scratch_mb=512, probe_timeout=60))
    worker.start()
    try:
        worker.probe(probe_source(probe_fill), "probe_fill", (park_mb, allocate_mb), timeout=60)
        return "survived"
    except WorkerError as exc:
        return type(exc).__name__
    finally:
        worker.stop()


def main() -> int:
    worker = Worker(slot=7, limits=Limits(memory_mb=CAP_MB))
    worker.start()
    worker.probe(probe_source(probe_fill), "probe_fill", (0, 1))
    worker.stop()
    baseline = (worker.peak_memory_bytes or 0) >> 20
    allocate = CAP_MB - baseline - PARK_MB + MARGIN_MB
    # Without tmpfs: baseline + allocate = cap - park + margin < cap; with it: cap + margin.
    control = run(0, allocate)
    parked = run(PARK_MB, allocate)
    caps = host_sandbox().caps
    print(
        json.dumps(
            {"caps": caps, "baseline_mb": baseline, "allocate_mb": allocate, "control": control, "parked": parked}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
