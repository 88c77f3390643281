"""The worker's stdout and stderr, read to the end by a thread of the grader, head and tail kept."""

from __future__ import annotations

import os
import threading


class OutputDrain(threading.Thread):
    """Reads the worker's stdout+stderr to the end, keeping only its head and tail."""

    def __init__(self, fd: int, keep: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.keep = fd, keep
        self.head, self.tail, self.total = b"", b"", 0

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            self.total += len(chunk)
            if len(self.head) < self.keep:
                self.head += chunk[: self.keep - len(self.head)]
            self.tail = (self.tail + chunk)[-self.keep :]
        os.close(self.fd)

    def text(self) -> str:
        if self.total <= 2 * self.keep:
            data = (self.head + self.tail[len(self.head) - self.total :]) if self.total > len(self.head) else self.head
        else:
            data = (
                self.head + f"\n... [{self.total - 2 * self.keep} bytes of output dropped] ...\n".encode() + self.tail
            )
        return data.decode("utf-8", "replace")
