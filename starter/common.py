"""Plain helpers the starter package, the grader and the kit's tools share (no torch import).

One home for: reading notebooks defensively and finding cells by grade_id, telling which
assignment a notebook is, writing files atomically, writing deterministic zips, reading
boolean environment flags, and the data root.
"""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from starter.constants import DEFAULT_PROFILE, ENV_DATA, ENV_FAST, ENV_PROFILE, PROFILES

T = TypeVar("T")

MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024  # the text of a notebook's cells (their sources; outputs not counted)
MAX_NOTEBOOK_FILE_BYTES = 512 * 1024 * 1024  # raw bytes read into memory at most, outputs included
ZIP_EPOCH = (2024, 1, 1, 0, 0, 0)  # fixed member timestamps: the same inputs give the same zip bytes
_TRUE_VALUES = frozenset({"1", "true", "yes"})


# --- environment --------------------------------------------------------------------------


def env_flag(name: str) -> bool:
    """True when the environment variable is "1", "true" or "yes" (any case, spaces ignored)."""
    return os.environ.get(name, "").strip().lower() in _TRUE_VALUES


def profile() -> str:
    """The run profile: "fast", "cpu" or "full".

    fast: tiny synthetic data, small images, one epoch (CI, quick try-outs); cpu: the real dataset at
    reduced size and epochs, so a notebook finishes on a laptop CPU; full: the course setting on a GPU.
    The profile changes sizes, epochs and which experiments run, never the code path.

    Returns:
        ``$SEGKIT_PROFILE`` (any case, spaces ignored); "fast" when ``$SEGKIT_FAST`` is on (the older
        switch); "full" when neither is set.
    Raises:
        ValueError: an unknown profile, or ``$SEGKIT_FAST`` on together with another profile.
    """
    value = os.environ.get(ENV_PROFILE, "").strip().lower()
    if value and value not in PROFILES:
        raise ValueError(f"${ENV_PROFILE}={value!r} is not a profile: use one of {', '.join(PROFILES)}")
    if env_flag(ENV_FAST):
        if value and value != "fast":
            raise ValueError(
                f"${ENV_FAST} is on (it means profile 'fast') but ${ENV_PROFILE}={value!r}: unset one of them"
            )
        return "fast"
    return value or DEFAULT_PROFILE


def fast_mode() -> bool:
    """Whether the notebooks run in fast mode (profile "fast"): tiny data, small images, one epoch."""
    return profile() == "fast"


def pick(*, fast: T, cpu: T, full: T) -> T:
    """The value for the current profile, e.g. ``IMAGE_SIZE = pick(fast=64, cpu=128, full=256)``.

    Inputs:
        fast, cpu, full: the value to use under each profile (see ``profile``).
    Returns:
        the argument named by ``profile()``.
    """
    return {"fast": fast, "cpu": cpu, "full": full}[profile()]


def data_root() -> Path:
    """Folder that holds the prepared datasets.

    Returns:
        ``$SEGKIT_DATA`` when set and non-empty, else ``~/segkit-data`` ("~" expanded; not created here).
    """
    configured = os.environ.get(ENV_DATA, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / "segkit-data"


# --- notebooks ----------------------------------------------------------------------------


class NotebookError(ValueError):
    """A file that cannot be read as a notebook; the message says how to fix it (student-facing)."""


@dataclass(frozen=True)
class NotebookRead:
    """A parsed notebook and what reading it cost: its file size and the bytes of outputs dropped."""

    notebook: dict
    file_bytes: int
    dropped_output_bytes: int = 0


def _drop_outputs(item: dict) -> dict | None:
    """json object_hook: outputs are dropped as soon as they are parsed (grading never needs them),
    so a notebook with hundreds of MB of outputs costs its sources' memory, not its outputs'."""
    if "output_type" in item:
        return None
    if "cell_type" in item:
        if "outputs" in item:
            item["outputs"] = []
        item.pop("attachments", None)
    return item


def parse_notebook(data: bytes, max_bytes: int = MAX_NOTEBOOK_BYTES) -> NotebookRead:
    """Parse notebook bytes defensively (see ``read_notebook``). Up to ``max_bytes`` the notebook is
    kept whole; a larger one has its outputs dropped, and then only the sources of its cells must
    fit ``max_bytes``. Raises NotebookError with what to do."""
    text = data.decode("utf-8", "replace")
    big = len(data) > max_bytes
    try:
        notebook = json.loads(text, object_hook=_drop_outputs if big else None)
    except json.JSONDecodeError as exc:
        raise NotebookError(
            f"the file is not valid notebook JSON ({exc.msg} at line {exc.lineno}); save it from Jupyter/Colab again"
        ) from None
    del text
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        version = notebook.get("nbformat") if isinstance(notebook, dict) else None
        if isinstance(version, int) and version < 4:
            raise NotebookError(
                f"the notebook uses the old format nbformat {version}; open it in Jupyter and save it "
                "again (it is converted to nbformat 4)"
            )
        raise NotebookError("the file has no notebook cells (is it a notebook?)")
    notebook["cells"] = [cell for cell in notebook["cells"] if isinstance(cell, dict)]
    if not big:
        return NotebookRead(notebook, len(data))
    if isinstance(notebook.get("metadata"), dict):
        notebook["metadata"].pop("widgets", None)
    # Markdown counts too: the limit is on what a notebook's author wrote, not on what its cells printed.
    text_bytes = sum(len(cell_source(c).encode("utf-8")) for c in notebook["cells"])
    if text_bytes > max_bytes:
        raise NotebookError(
            f"the notebook's cells hold {text_bytes / 1e6:.0f} MB of text (limit {max_bytes // 1024**2} MB, "
            "outputs not counted): remove the large data pasted into its cells and save it again"
        )
    kept = len(json.dumps(notebook, ensure_ascii=False).encode("utf-8"))
    return NotebookRead(notebook, len(data), max(0, len(data) - kept))


def load_notebook(path: Path, max_bytes: int = MAX_NOTEBOOK_BYTES) -> NotebookRead:
    """``parse_notebook`` of a file, which is never read into memory past ``MAX_NOTEBOOK_FILE_BYTES``
    (or ``max_bytes``, when larger)."""
    path = Path(path)
    cap = max(max_bytes, MAX_NOTEBOOK_FILE_BYTES)
    with open(path, "rb") as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        size = max(path.stat().st_size, len(data))
        raise NotebookError(
            f"the notebook is {size / 1e6:.0f} MB, more than the {cap // 1024**2} MB the grader reads; clear "
            "large outputs (Edit > Clear all outputs) and save it again"
        )
    return parse_notebook(data, max_bytes)


def read_notebook(path: Path, max_bytes: int = MAX_NOTEBOOK_BYTES) -> dict:
    """Parse a notebook file defensively.

    A stray non-UTF-8 byte is replaced rather than fatal, and non-dict cells are dropped,
    so one damaged cell cannot cost every unit. A file larger than ``max_bytes`` is read with
    its outputs dropped (grading runs code, never reads outputs); only a notebook whose cells'
    sources are that large, or whose file is beyond ``MAX_NOTEBOOK_FILE_BYTES``, is refused.
    Raises NotebookError with what to do.
    """
    return load_notebook(path, max_bytes).notebook


def cell_source(cell: dict) -> str:
    """A cell's source as one string, whether stored as a string or as a list of lines."""
    source = cell.get("source", "")
    if isinstance(source, list):
        source = "".join(s for s in source if isinstance(s, str))
    return source if isinstance(source, str) else ""


def nbgrader_meta(cell: dict) -> dict:
    meta = cell.get("metadata")
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def segkit_role(cell: dict) -> str | None:
    """The kit's own cell role (metadata ``segkit.role``): "setup", "check" or None."""
    meta = cell.get("metadata")
    meta = meta.get("segkit") if isinstance(meta, dict) else None
    return meta.get("role") if isinstance(meta, dict) else None


def grade_id(cell: dict) -> str | None:
    value = nbgrader_meta(cell).get("grade_id")
    return value if isinstance(value, str) else None


def cells_by_grade_id(notebook: dict) -> dict[str, list[dict]]:
    """grade_id -> the cells carrying it, in notebook order (a duplicated id keeps every copy)."""
    found: dict[str, list[dict]] = {}
    for cell in notebook["cells"]:
        key = grade_id(cell)
        if key is not None:
            found.setdefault(key, []).append(cell)
    return found


def infer_assignment(notebook: dict, units: Mapping[str, Iterable[str]], file_stem: str | None = None) -> str | None:
    """Which assignment a notebook is.

    Inputs:
        notebook: a parsed notebook.
        units: assignment name -> its graded grade_ids.
        file_stem: the file's name without extension; when it names an assignment, that wins.
    Returns:
        the assignment sharing most grade_ids with the notebook, or None when none shares any.
    """
    if file_stem in units:
        return file_stem
    ids = set(cells_by_grade_id(notebook))
    scores = {name: len(ids & set(graded)) for name, graded in units.items()}
    best = max(sorted(scores), key=scores.get, default=None)
    return best if best is not None and scores[best] > 0 else None


def notebook_text(notebook: dict) -> str:
    """A notebook as nbformat writes it: each source a list of lines, sorted keys, one-space indent,
    so that a one-line change in a cell is a one-line diff."""
    import nbformat  # only the kit's tools write notebooks; students' helpers never need it

    return nbformat.writes(nbformat.from_dict(notebook), version=nbformat.NO_CONVERT) + "\n"


def write_notebook(path: Path, notebook: dict) -> Path:
    """Write a notebook atomically in ``notebook_text`` form."""
    return write_atomic(path, notebook_text(notebook))


# --- files --------------------------------------------------------------------------------


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file over ``path``.

    Readers see the old file or the new one, never half of one: an interrupted write (Ctrl-C, a full
    disk, a Colab disconnect) leaves the last good file in place. The temporary file sits in the
    destination folder (a rename never crosses filesystems) under a name unique across machines:
    host, process id and a random part, created exclusively. So parallel writers of the same file,
    on one machine or on several sharing an NFS folder, never collide and take no lock; the last
    rename wins, and a reader sees one whole version.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    unique = f".{path.name}.{socket.gethostname()}.{os.getpid()}."
    handle, name = tempfile.mkstemp(prefix=unique, suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide e.g. grades from a TA's group
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to ``path`` atomically (see ``write_atomically``)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return write_atomically(path, lambda temporary: temporary.write_bytes(payload))


def zip_bytes(members: Mapping[str, bytes], executable: Iterable[str] = ()) -> bytes:
    """A deterministic zip: members sorted, fixed timestamps and permissions (0644, or 0755 for
    the names in ``executable``), so the same inputs always give the same bytes."""
    executable = set(executable)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = ((0o755 if name in executable else 0o644) | stat.S_IFREG) << 16
            archive.writestr(info, members[name])
    return buffer.getvalue()


def write_zip(path: Path, members: Mapping[str, bytes], executable: Iterable[str] = ()) -> Path:
    """Write ``zip_bytes(members, executable)`` to ``path`` atomically."""
    return write_atomic(path, zip_bytes(members, executable))
