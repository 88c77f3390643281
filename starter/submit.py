"""Check your completed notebooks and pack them into one zip to hand in.

    python -m starter.submit --student YOUR_ID                    # every notebook you started
    python -m starter.submit --student YOUR_ID --assignment fcn   # only this assignment
    python -m starter.submit --student YOUR_ID path/to/fcn.ipynb  # these files
    python -m starter.submit --check                              # validate only, write nothing

Without file arguments it looks for ``notebooks/*/*.ipynb`` and ``*.ipynb`` in the current
folder and in the kit's folder (on Colab: your Drive folder), and takes the notebooks of known
assignments in which at least one graded cell is implemented. Each notebook must parse, keep
every graded cell exactly once (found by its ``grade_id``) and implement it (no cell may still
``raise NotImplementedError()``). Huge outputs (large images, megabytes of text) are removed
from the copy that is packed; your notebook file itself is never changed.

The zip, ``<student id>.zip``, holds ``<assignment>/<assignment>.ipynb`` per notebook and a
``MANIFEST.json`` (student id, files, SHA-256, time). Nothing is written when a check fails:
the command says exactly what is missing and exits with status 1.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import io
import json
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from starter import __version__, common
from starter.common import cell_source, cells_by_grade_id, write_atomic
from starter.environment import ASSIGNMENTS_FILE, KIT_ROOT, in_colab, load_assignments
from starter.ids import StudentIdError, check_student_id

ENV_STUDENT = "SEGKIT_STUDENT_ID"
STUB = "raise NotImplementedError()"
UNANSWERED = "YOUR ANSWER HERE"
MAX_OUTPUT_BYTES = 1_000_000  # one cell output larger than this is replaced by a note
MAX_IMAGE_BYTES = 300_000  # an image (base64) larger than this is removed from its output
MAX_NOTEBOOK_BYTES = 20_000_000  # what is left after stripping must fit this
MAX_INPUT_BYTES = 500_000_000  # larger files are not even read


@dataclass
class Checked:
    """One notebook after validation."""

    path: Path
    assignment: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unimplemented: list[str] = field(default_factory=list)
    implemented: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # graded cells missing, duplicated or not valid Python
    stripped: int = 0
    content: bytes = b""  # the notebook as packed (huge outputs removed)

    @property
    def started(self) -> bool:
        return bool(self.implemented)


def read_notebook(path: Path) -> dict:
    """Parse a notebook file; raise ValueError (NotebookError) with a message saying how to fix it."""
    return common.read_notebook(path, max_bytes=MAX_INPUT_BYTES)


def infer_assignment(notebook: dict, path: Path, assignments: dict) -> str | None:
    """The file name if it names an assignment, else the assignment sharing most graded cell ids."""
    units = {name: [u["grade_id"] for u in spec["graded"]] for name, spec in assignments.items()}
    return common.infer_assignment(notebook, units, file_stem=path.stem)


def _syntax_error(source: str) -> str | None:
    # IPython magics and shell escapes are not Python; blank them out (keep line numbers).
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        compile("\n".join(lines), "<cell>", "exec")
    except SyntaxError as error:
        return f"line {error.lineno}: {error.msg}"
    return None


def strip_outputs(notebook: dict) -> int:
    """Remove huge outputs in place: large images, outputs over MAX_OUTPUT_BYTES, big widget state.

    Returns:
        how many outputs (or attachments) were removed or shortened.
    """
    removed = 0
    for cell in notebook["cells"]:
        attachments = cell.get("attachments")
        if isinstance(attachments, dict):
            for name in [n for n, data in attachments.items() if len(json.dumps(data)) > MAX_IMAGE_BYTES]:
                del attachments[name]
                removed += 1
        outputs = cell.get("outputs")
        if not isinstance(outputs, list):
            continue
        kept = []
        for output in outputs:
            if not isinstance(output, dict):
                removed += 1
                continue
            data = output.get("data")
            if isinstance(data, dict):
                for mime in [
                    m
                    for m, value in data.items()
                    if m.startswith("image/") and len(json.dumps(value)) > MAX_IMAGE_BYTES
                ]:
                    del data[mime]
                    data.setdefault("text/plain", f"[{mime} image removed by starter.submit: too large]")
                    removed += 1
            size = len(json.dumps(output))
            if size > MAX_OUTPUT_BYTES:
                output = {
                    "output_type": "stream",
                    "name": "stdout",
                    "text": f"[output of {size / 1e6:.1f} MB removed by starter.submit]\n",
                }
                removed += 1
            kept.append(output)
        cell["outputs"] = kept
    metadata = notebook.get("metadata")
    if isinstance(metadata, dict) and len(json.dumps(metadata.get("widgets", {}))) > MAX_OUTPUT_BYTES:
        del metadata["widgets"]
        removed += 1
    return removed


def check_notebook(path: Path, assignment: str, spec: dict) -> Checked:
    """Validate one notebook against its assignment's manifest entry and prepare the packed copy."""
    result = Checked(path, assignment)
    try:
        notebook = read_notebook(path)
    except (OSError, ValueError) as error:
        result.errors.append(str(error))
        return result
    by_id = cells_by_grade_id(notebook)
    for unit in spec["graded"]:
        grade_id = unit["grade_id"]
        cells = [cell for cell in by_id.get(grade_id, []) if cell.get("cell_type") == "code"]
        if len(cells) != 1:
            result.broken.append(grade_id)
        if not cells:
            result.errors.append(
                f"graded cell '{grade_id}' is missing (deleted, turned into markdown, or your code was pasted into a "
                "new cell): copy that cell back from the released notebook and put your code in it"
            )
            continue
        if len(cells) > 1:
            result.errors.append(
                f"graded cell '{grade_id}' appears {len(cells)} times (a copied cell keeps its id): "
                "keep exactly one and delete the copies"
            )
            continue
        source = cell_source(cells[0])
        problem = _syntax_error(source)
        if STUB in source:
            result.unimplemented.append(grade_id)
        elif not problem:
            result.implemented.append(grade_id)
        if problem:
            result.broken.append(grade_id)
            result.errors.append(f"graded cell '{grade_id}' is not valid Python ({problem}): the grader cannot run it")
    for grade_id in spec.get("setup", []):
        if grade_id not in by_id:
            result.warnings.append(f"setup cell '{grade_id}' is missing (the grader uses the original one)")
    for unit in spec.get("written", []):
        cells = by_id.get(unit["grade_id"], [])
        if not cells:
            result.warnings.append(f"written answer '{unit['grade_id']}' is missing (its cell was deleted)")
        elif all(cell_source(cell).strip() in ("", UNANSWERED) for cell in cells):
            result.warnings.append(f"written answer '{unit['grade_id']}' is not answered yet")
    packed = copy.deepcopy(notebook)
    result.stripped = strip_outputs(packed)
    result.content = (json.dumps(packed, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    if len(result.content) > MAX_NOTEBOOK_BYTES:
        result.errors.append(
            f"the notebook is still {len(result.content) / 1e6:.0f} MB after removing large outputs: "
            "clear the outputs (Edit > Clear all outputs), save and retry"
        )
    return result


COLAB_NOTEBOOKS = Path("/content/drive/MyDrive/Colab Notebooks")  # where Colab's "Save a copy in Drive" puts copies


def search_roots() -> list[Path]:
    """Folders searched for notebooks: the current one, the kit's (where `starter` lives), and on
    Colab the Drive folder of notebook copies."""
    roots = []
    candidates = [Path.cwd(), KIT_ROOT] + ([COLAB_NOTEBOOKS] if COLAB_NOTEBOOKS.is_dir() else [])
    for root in candidates:
        if root.resolve() not in [r.resolve() for r in roots]:
            roots.append(root)
    return roots


def discover(roots: list[Path], assignments: dict) -> dict[str, list[tuple[Path, dict]]]:
    """Notebooks of known assignments under the roots: {assignment: [(path, notebook), ...]}."""
    found: dict[str, list[tuple[Path, dict]]] = {}
    seen: set[Path] = set()
    for root in roots:
        for path in sorted(root.glob("notebooks/*/*.ipynb")) + sorted(root.glob("*.ipynb")):
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            try:
                notebook = read_notebook(path)
            except (OSError, ValueError):
                continue  # not one of ours; explicit paths get the full error instead
            name = infer_assignment(notebook, path, assignments)
            if name:
                found.setdefault(name, []).append((path, notebook))
    return found


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def select(paths: list[Path], only: list[str], assignments: dict) -> tuple[list[Checked], list[str], list[str]]:
    """The notebooks to pack, with messages: (checked notebooks, errors, notes)."""
    errors, notes, chosen = [], [], []
    if paths:
        for path in paths:
            if not path.is_file():
                errors.append(f"{path}: no such file")
                continue
            try:
                notebook = read_notebook(path)
            except (OSError, ValueError) as error:
                errors.append(f"{_display(path)}: {error}")
                continue
            name = infer_assignment(notebook, path, assignments)
            if name is None:
                errors.append(
                    f"{_display(path)}: not one of this kit's assignments ({', '.join(assignments)}); "
                    "name the file after its assignment, e.g. fcn.ipynb"
                )
                continue
            chosen.append(check_notebook(path, name, assignments[name]))
    else:
        found = discover(search_roots(), assignments)
        for name in sorted(found):
            if only and name not in only:
                continue
            checked = [check_notebook(path, name, assignments[name]) for path, _ in found[name]]
            started = [c for c in checked if c.started or c.errors]
            if not started:
                notes.append(f"{name}: not started ({_display(checked[0].path)}), not included")
            elif len(started) > 1:
                errors.append(
                    f"{name}: several notebooks found ({', '.join(_display(c.path) for c in started)}); "
                    f"name the one to submit: python -m starter.submit --student ID {_display(started[0].path)}"
                )
            else:
                chosen.append(started[0])
        missing = [name for name in only if name not in found]
        if missing:
            errors.append(f"no notebook found for {', '.join(missing)} in {', '.join(str(r) for r in search_roots())}")
    names = [c.assignment for c in chosen]
    for name in sorted({n for n in names if names.count(n) > 1}):
        errors.append(
            f"{name}: more than one notebook given ({', '.join(_display(c.path) for c in chosen if c.assignment == name)})"
        )
    return chosen, errors, notes


def default_out_dir(checked: list[Checked]) -> Path:
    """The kit's folder when the notebooks came from its notebooks/ (on Colab: Drive), else the current folder."""
    for item in checked:
        parent = item.path.resolve().parent.parent
        if parent.name == "notebooks":
            return parent.parent
    return Path.cwd()


def write_zip(student: str, checked: list[Checked], out_dir: Path) -> Path:
    """Write <out_dir>/<student>.zip atomically; return its path."""
    files = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in sorted(checked, key=lambda c: c.assignment):
            member = f"{item.assignment}/{item.assignment}.ipynb"
            archive.writestr(member, item.content)
            files.append(
                {
                    "path": member,
                    "assignment": item.assignment,
                    "source": item.path.name,
                    "sha256": hashlib.sha256(item.content).hexdigest(),
                    "bytes": len(item.content),
                    "implemented": item.implemented,
                    "unimplemented": item.unimplemented,
                    "outputs_removed": item.stripped,
                }
            )
        manifest = {
            "student_id": student,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tool": f"starter.submit {__version__}",
            "files": files,
        }
        archive.writestr("MANIFEST.json", json.dumps(manifest, indent=1) + "\n")
    return write_atomic(out_dir / f"{student}.zip", buffer.getvalue())


def set_aside_stale_zip(student: str, out_dir: Path) -> Path | None:
    """After a failed check: an older <student>.zip in `out_dir` is renamed to
    <student>.zip.old, so that it cannot be uploaded by mistake for the notebook just refused."""
    stale = out_dir / f"{student}.zip"
    if not stale.is_file():
        return None
    aside = stale.with_name(f"{stale.name}.old")
    os.replace(stale, aside)
    return aside


def status_line(item: Checked) -> str:
    """One notebook's line: only graded cells present once, valid and implemented are counted."""
    total = len(item.implemented) + len(item.unimplemented) + len(item.broken)
    line = f"{item.assignment}: {_display(item.path)}: {len(item.implemented)}/{total} graded cells implemented"
    if item.broken:
        line += f" ({len(item.broken)} missing, duplicated or not valid Python)"
    if item.stripped:
        line += f", {item.stripped} large output(s) removed from the packed copy"
    return line


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m starter.submit",
        description=__doc__.splitlines()[0],
        epilog="Save your notebooks first (File > Save).",
    )
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to pack (default: those found, see above)")
    parser.add_argument(
        "--student", help=f"your student id (letters, digits, '.', '_', '-', '@'; default ${ENV_STUDENT})"
    )
    parser.add_argument("--assignment", action="append", default=[], help="only this assignment (repeatable)")
    parser.add_argument("--out", type=Path, help="folder for the zip (default: the kit's folder, or the current one)")
    parser.add_argument("--check", action="store_true", help="only validate; write no zip")
    parser.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="pack even if some graded cells are not implemented (they score 0)",
    )
    options = parser.parse_args(argv)

    assignments = load_assignments()
    if not assignments:
        print(f"error: {ASSIGNMENTS_FILE} is missing: this copy of the kit is incomplete", file=sys.stderr)
        return 1
    unknown = [name for name in options.assignment if name not in assignments]
    if unknown:
        parser.error(f"unknown assignment {', '.join(unknown)} (known: {', '.join(assignments)})")
    student = options.student or os.environ.get(ENV_STUDENT, "").strip()
    if not options.check:
        if not student:
            parser.error("pass your student id: python -m starter.submit --student YOUR_ID")
        try:
            check_student_id(student)
        except StudentIdError as exc:
            parser.error(str(exc))

    checked, errors, notes = select(options.notebooks, options.assignment, assignments)
    for note in notes:
        print(f"note: {note}")
    for item in checked:
        print(status_line(item))
        for warning in item.warnings:
            print(f"  warning: {warning}")
        for error in item.errors:
            errors.append(f"{item.assignment} ({_display(item.path)}): {error}")
        if item.unimplemented:
            message = (
                f"{item.assignment} ({_display(item.path)}): not implemented yet (the cell still raises "
                f"NotImplementedError): {', '.join(item.unimplemented)}"
            )
            if options.allow_incomplete:
                print(f"  warning: {message}; packed anyway (--allow-incomplete)")
            else:
                errors.append(message + " (finish them, or pass --allow-incomplete to submit without them)")
    if not checked and not errors:
        errors.append("no started notebook found: run this from the kit's folder, or name the notebook files")
    if errors:
        print("\nNOT submitted. Fix these and run again:", file=sys.stderr)
        for error in errors:
            print(f"  - {error}", file=sys.stderr)
        if student and not options.check:
            aside = set_aside_stale_zip(student, options.out or default_out_dir(checked))
            if aside:
                print(
                    f"  (an older {student}.zip was renamed to {aside.name}: it does not hold these notebooks; "
                    "do not upload it)",
                    file=sys.stderr,
                )
        return 1
    if options.check:
        print("\nAll checks passed (--check: no zip written).")
        return 0
    target = write_zip(student, checked, options.out or default_out_dir(checked))
    where = " (in your Google Drive)" if in_colab() and str(target).startswith("/content/drive") else ""
    print(f"\nWrote {target}{where}: {', '.join(sorted(c.assignment for c in checked))}. Upload this file to hand in.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
