"""The untrusted side of grading: runs ONE student's notebook cells and answers probes.

This file is bound on its own (read-only, next to the `starter` package) into the worker's
sandbox and run there as an unprivileged user. It must not import anything from `grader`
(the worker cannot see that folder). It speaks a tiny framed protocol on two file descriptors:

    frame = 8-byte big-endian length + payload (torch.save of plain data)

Requests (parent -> worker):
    {"op": "exec", "grade_id": str, "source": str}            run one notebook cell
    {"op": "probe", "id": int, "source": str, "name": str,
     "args": list, "kwargs": dict,
     "isolate": None | {"unit": str, "reference": [[grade_id, source], ...]}}
                                                                call a probe function (isolate: on
                                                                the reference versions of the units
                                                                that unit uses; see isolated_namespace)
    {"op": "quit"}
Replies (worker -> parent):
    {"op": "ready"} once at start-up
    {"op": "exec", "grade_id", "status": "ok"|"error", "error": str}
    {"op": "probe", "id", "status": "ok"|"error", "value": plain data, "error": str}

Nothing here is trusted by the parent: it loads every reply with
`torch.load(..., weights_only=True)` and compares values itself. Student code can
forge replies, but a forged reply is no more than a return value it could have
produced anyway; the parent chooses the inputs and computes the expected outputs.
"""

import io
import os
import re
import struct
import sys
import traceback

MAX_FRAME = 512 * 1024 * 1024
_MAGIC_LINE = re.compile(r"^(\s*)[%!].*$")


def read_frame(fd):
    header = _read_exact(fd, 8)
    if header is None:
        return None
    (length,) = struct.unpack(">Q", header)
    if length > MAX_FRAME:
        raise ValueError("request too large")
    return _read_exact(fd, length)


def _read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def write_frame(fd, payload):
    data = struct.pack(">Q", len(payload)) + payload
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def strip_magics(source):
    """Turn IPython magics and shell escapes into `pass`: the worker is plain Python."""
    return "\n".join(_MAGIC_LINE.sub(r"\1pass", line) for line in source.split("\n"))


def short_error(exc):
    """One line for the student plus the frames that came from their own cells."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell")]
    where = ""
    if frames:
        last = frames[-1]
        where = f" (in {last.filename[1:-1]}, line {last.lineno})"
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > 500:
        text = text[:500] + "..."
    return text + where


def apply_limits(limits):
    """Lower this process's resource limits before any student code runs (it cannot raise them again).
    Inside the sandbox's user namespace RLIMIT_NPROC counts this worker's own processes only."""
    import resource

    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def main():
    fd_in, fd_out = int(sys.argv[1]), int(sys.argv[2])
    if len(sys.argv) > 3:
        import json

        apply_limits(json.loads(sys.argv[3]))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the student-visible `starter` package
    import torch

    torch.set_num_threads(1)
    save = torch.save  # keep our own reference: student code may replace torch.save

    def reply(obj):
        buffer = io.BytesIO()
        try:
            save(obj, buffer)
        except Exception as exc:  # unpicklable student object: report, do not crash
            buffer = io.BytesIO()
            save(
                {
                    "op": obj.get("op"),
                    "id": obj.get("id"),
                    "grade_id": obj.get("grade_id"),
                    "status": "error",
                    "error": f"result is not plain data: {type(exc).__name__}",
                },
                buffer,
            )
        write_frame(fd_out, buffer.getvalue())

    namespace = {"__name__": "__main__"}
    cells = {}  # grade_id -> the source this worker ran for it
    isolated = {}  # (unit, reference sources) -> namespace with the reference dependencies under it
    reply({"op": "ready"})
    while True:
        frame = read_frame(fd_in)
        if frame is None:
            return
        request = torch.load(io.BytesIO(frame), weights_only=True)
        op = request.get("op")
        if op == "quit":
            return
        if op == "exec":
            gid = request["grade_id"]
            cells[gid] = request["source"]
            try:
                code = compile(strip_magics(request["source"]), f"<cell {gid}>", "exec")
                exec(code, namespace)
                reply({"op": "exec", "grade_id": gid, "status": "ok", "error": ""})
            except BaseException as exc:  # SystemExit and KeyboardInterrupt included
                reply({"op": "exec", "grade_id": gid, "status": "error", "error": short_error(exc)})
        elif op == "probe":
            try:
                probe_namespace = namespace
                if request.get("isolate"):
                    probe_namespace = isolated_namespace(namespace, cells, isolated, request["isolate"])
                probe_globals = {"__name__": "probe"}
                exec(compile(request["source"], "<probe>", "exec"), probe_globals)
                value = probe_globals[request["name"]](probe_namespace, *request["args"], **request["kwargs"])
                reply({"op": "probe", "id": request["id"], "status": "ok", "value": to_plain(value, torch)})
            except BaseException as exc:
                reply({"op": "probe", "id": request["id"], "status": "error", "error": short_error(exc)})


def isolated_namespace(namespace, cells, cache, isolate):
    """The namespace a check of one unit sees when the unit must be graded on its own: a copy of
    the student's, with the reference versions of the graded units it uses run on top, then the
    student's own cell of that unit run again so that its functions and classes bind to those.
    A bug in a helper unit then costs that helper's points only. Built once per unit."""
    unit = isolate["unit"]
    reference = [(gid, source) for gid, source in isolate["reference"]]
    key = (unit, tuple(reference))
    if key not in cache:
        overlay = dict(namespace)
        for gid, source in reference:
            exec(compile(strip_magics(source), f"<reference {gid}>", "exec"), overlay)
        exec(compile(strip_magics(cells[unit]), f"<cell {unit}>", "exec"), overlay)
        cache[key] = overlay
    return cache[key]


def to_plain(value, torch):
    """Copy a probe result into plain containers of plain tensors and scalars."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").clone()
    if type(value).__module__ == "numpy" and hasattr(value, "shape"):
        return torch.from_numpy(value.copy())
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    if type(value) in (list, tuple):
        return [to_plain(v, torch) for v in value]
    if type(value) is dict:
        return {str(k): to_plain(v, torch) for k, v in value.items()}
    raise TypeError(f"probe returned a {type(value).__name__}, which is not plain data")


if __name__ == "__main__":
    main()
