"""The frame protocol between the grader and a worker, used by both sides.

    frame = 8-byte big-endian length + payload (torch.save of plain data)

Requests (grader -> worker):
    {"op": "exec", "grade_id": str, "source": str}            run one notebook cell
    {"op": "probe", "id": int, "source": str, "name": str,
     "args": list, "kwargs": dict}                              call a probe function
    {"op": "quit"}
Replies (worker -> grader):
    {"op": "ready"} once at start-up
    {"op": "exec", "grade_id", "status": "ok"|"error", "error": str}
    {"op": "probe", "id", "status": "ok"|"error", "value": plain data, "error": str}

The worker loads this file by path (it sees no `grader/`), so it imports only the standard
library; torch's save and load are passed in. The grader decodes every reply with
``weights_only=True`` and caps its size before reading it.
"""

from __future__ import annotations

import io
import os
import struct

# The type checker's names: the worker side imports only the standard library it uses (the block never runs).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

HEADER = struct.Struct(">Q")
MAX_REQUEST_BYTES = 512 * 1024 * 1024  # what the worker accepts from the grader
# The largest reply of the bundled solutions is 1.7 MB (cam; fcn 1.1 MB: the runner logs each submission's
# largest as `largest worker reply`); the cap is about 9x that, and a reply is decoded in the trusted process.
MAX_REPLY_BYTES = 16 * 1024 * 1024


class FrameTooLarge(ValueError):
    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"a frame of {length} bytes is over the {limit // 2**20} MB limit")
        self.length, self.limit = length, limit


def encode(message: object, save: Callable[[object, io.BytesIO], object]) -> bytes:
    """`message` as a payload, through `save` (torch.save, or the worker's own reference to it)."""
    buffer = io.BytesIO()
    save(message, buffer)
    return buffer.getvalue()


def decode(payload: bytes, load: Callable[..., Any]) -> Any:
    """A payload back to plain data, through `load` (torch.load); nothing but plain data loads."""
    return load(io.BytesIO(payload), weights_only=True)


def write_frame(fd: int, payload: bytes) -> None:
    view = memoryview(HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def read_blocking(fd: int, n: int) -> bytes | None:
    """Exactly `n` bytes from `fd`, or None at end of input."""
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, limit: int, read_exact: Callable[[int, int], bytes | None] = read_blocking) -> bytes | None:
    """One frame's payload (None at end of input); raises FrameTooLarge before reading a payload
    over `limit`. read_exact(fd, n): the caller's reader (the grader's has a deadline)."""
    header = read_exact(fd, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    if length > limit:
        raise FrameTooLarge(length, limit)
    return read_exact(fd, length)
