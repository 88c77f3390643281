"""The student bundle (`make release`) and the assignment manifest it ships (starter/assignments.json).

The bundle is opened and searched independently of segkit/build/release.py's own guard: no solution
region, no instructor folder, no line of any reference solution or hidden check in any file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader.assignments import REPO_ROOT, assignment_names, load_assignment
from segkit.build import release

PREFIX = "segkit/"
MIN_LEAK_LINE = 25  # a reference line longer than this must not appear anywhere in the bundle


def read_bundle(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as bundle:
        names = bundle.namelist()
        assert all(name.startswith(PREFIX) for name in names), "everything unpacks into one segkit/ folder"
        return {name[len(PREFIX) :]: bundle.read(name).decode("utf-8") for name in names}


@pytest.fixture(scope="module")
def full_bundle(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("release") / "student-bundle.zip"
    release.build_release(out, check_sources=False)  # drift of notebooks/ is test_notebooks' job
    return read_bundle(out)


def searchable(path: str, text: str) -> str:
    """A file's text as a student reads it: a notebook's cell sources (JSON escapes quotes), else the file."""
    if path.endswith(".ipynb"):
        return "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"]) + "\n" + text
    return text


def reference_lines() -> dict[str, set[str]]:
    """Per graded unit (and written answer) of every solution notebook: its solution lines longer than 25 characters."""
    lines = {}
    for name in assignment_names():
        for unit in load_assignment(name).units:
            if unit.kind == "auto":
                regions = re.findall(r"### BEGIN SOLUTION(.*?)### END SOLUTION", unit.source, re.S)
                assert regions, f"{unit.grade_id} has no solution region"
                text = "\n".join(regions)
            else:
                text = unit.source  # the model answer: the whole cell is replaced in the student version
            lines[unit.grade_id] = {line.strip() for line in text.splitlines() if len(line.strip()) > MIN_LEAK_LINE}
    return lines


WINDOW = 3  # consecutive lines of a hidden check that must never appear together in the bundle


# A line holding only a literal or closing brackets (one item of a list the formatter spread over
# lines, e.g. VGG's layer names) says nothing about a check: such lines are left out of the windows.
_BARE_LINE = re.compile(r"""^(["'][^"']*["']|[-+0-9.e]+|[)\]}]+)[,)\]}]*:?$""")


def _code_lines(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip()
        and not line.strip().startswith(("#", "import ", "from "))
        and not _BARE_LINE.match(line.strip())
    ]


def hidden_check_windows() -> set[str]:
    """Every run of 3 consecutive code lines of the hidden checks and example specs.

    Single lines are not distinctive enough (public checks legitimately share e.g.
    `vgg = torchvision.models.vgg16(weights=None)` or a coordinate-grid helper with hidden ones);
    three lines in a row are a copied piece of a check.
    """
    windows = set()
    for path in [*(REPO_ROOT / "assignments").glob("*/test_*.py"), *(REPO_ROOT / "assignments").glob("*/examples.py")]:
        lines = _code_lines(path.read_text(encoding="utf-8"))
        windows |= {"\n".join(lines[i : i + WINDOW]) for i in range(len(lines) - WINDOW + 1)}
    return windows


def test_manifest_is_up_to_date():
    """Does starter/assignments.json list exactly what solutions/ defines (run `python -m segkit.build.release --manifest` if not)?"""
    assert not release.manifest_is_stale(), (
        "starter/assignments.json is stale: run `python -m segkit.build.release --manifest`"
    )
    manifest = json.loads(release.MANIFEST_PATH.read_text(encoding="utf-8"))["assignments"]
    assert sorted(manifest) == assignment_names()
    for name in assignment_names():
        spec = load_assignment(name)
        assert [u["grade_id"] for u in manifest[name]["graded"]] == [u.grade_id for u in spec.auto_units]
        assert [u["points"] for u in manifest[name]["graded"]] == [u.points for u in spec.auto_units]
        assert manifest[name]["setup"] == [gid for gid, _ in spec.setup_cells]
        assert manifest[name]["written"] == [{"grade_id": u.grade_id, "points": u.points} for u in spec.manual_units]


def test_manifest_drift_is_detected(tmp_path, monkeypatch):
    """Would an edited manifest (or one missing a graded cell) be reported as stale, and the release refused?"""
    stale = json.loads(release.MANIFEST_PATH.read_text(encoding="utf-8"))
    stale["assignments"]["fcn"]["graded"].pop()
    path = tmp_path / "assignments.json"
    path.write_text(json.dumps(stale), encoding="utf-8")
    monkeypatch.setattr(release, "MANIFEST_PATH", path)
    assert release.manifest_is_stale()
    with pytest.raises(SystemExit, match="assignments.json is out of date"):
        release.build_release(tmp_path / "bundle.zip")
    assert not (tmp_path / "bundle.zip").exists()


def test_bundle_holds_what_students_need(full_bundle):
    """Does the bundle hold every student notebook, the starter package, data scripts, environment files and a README?"""
    for name in assignment_names():
        assert f"notebooks/{name}/{name}.ipynb" in full_bundle
    for path in (
        "starter/__init__.py",
        "starter/environment.py",
        "starter/submit.py",
        "starter/checks/core.py",
        "data_scripts/__init__.py",
        "data_scripts/download.py",
        "environment.yml",
        "requirements.txt",
        "pyproject.toml",
        "STUDENT_README.md",
    ):
        assert path in full_bundle, path
    assert json.loads(full_bundle["starter/assignments.json"]) == release.assignment_manifest()
    student_pyproject = full_bundle["pyproject.toml"]
    assert "[tool.pytest" not in student_pyproject and 'name = "segkit"' in student_pyproject
    assert "[project.scripts]" not in student_pyproject and "nbgrader" not in student_pyproject
    assert 'include = ["starter*", "data_scripts*"]' in student_pyproject
    readme = full_bundle["STUDENT_README.md"]
    for topic in ("Google Colab", "GPU server", "SEGKIT_FAST", "check(", "python -m starter.submit --student"):
        assert topic in readme, topic
    for name in assignment_names():
        assert full_bundle[f"notebooks/{name}/{name}.ipynb"] == (
            REPO_ROOT / "notebooks" / name / f"{name}.ipynb"
        ).read_text(encoding="utf-8")


def test_bundle_holds_no_instructor_material(full_bundle):
    """Is there no solutions/, grader/ or tests/ file, no solution region and no hidden-check probe in the bundle?"""
    for path, text in full_bundle.items():
        assert not path.startswith(("solutions/", "grader/", "tests/", "bench/", "build/")), path
        assert "__pycache__" not in path and not path.endswith(".pyc"), path
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, path
        assert "def probe_" not in text, f"{path} holds a hidden-check probe"
        assert not re.search(r"^\s*(from|import) grader\b", text, re.M), f"{path} imports the grader"


def test_no_reference_solution_line_anywhere(full_bundle):
    """Does no line (> 25 characters) of any reference solution or model answer appear in any file of the bundle?"""
    leaks = []
    texts = {path: searchable(path, text) for path, text in full_bundle.items()}
    for grade_id, lines in reference_lines().items():
        for line in lines:
            leaks += [f"{grade_id}: {line!r} in {path}" for path, text in texts.items() if line in text]
    assert not leaks, "reference solution lines in the student bundle:\n" + "\n".join(leaks[:20])


def test_no_piece_of_a_hidden_check_anywhere(full_bundle):
    """Does no piece (3 consecutive code lines) of a hidden check or example spec appear in any file of the bundle?"""
    windows = hidden_check_windows()
    assert len(windows) > 100
    leaks = []
    for path, text in full_bundle.items():
        normalised = "\n".join(_code_lines(searchable(path, text)))
        leaks += [f"{path}: {window!r}" for window in windows if window in normalised]
    assert not leaks, "hidden-check code in the student bundle:\n" + "\n".join(leaks[:10])


def test_selected_assignments_only(tmp_path):
    """With --assignments fcn,cam, are only their notebooks, data scripts and public checks released?"""
    out = tmp_path / "partial.zip"
    assert release.main(["--assignments", "fcn,cam", "--out", str(out)]) == 0
    files = read_bundle(out)
    notebooks = sorted(path for path in files if path.startswith("notebooks/"))
    assert notebooks == ["notebooks/cam/cam.ipynb", "notebooks/fcn/fcn.ipynb"]
    scripts = sorted(Path(path).name for path in files if path.startswith("data_scripts/"))
    assert scripts == [
        "__init__.py",
        "cam_samples.json",
        "cam_samples.py",
        "cmp_facade.py",
        "download.py",
        "kitti.py",
        "landcover.py",
        "prepare.py",
        "synthetic.py",
    ]
    checks = sorted(Path(path).stem for path in files if path.startswith("starter/checks/"))
    assert checks == ["__init__", "cam", "core", "fcn", "report", "shared"]
    assert sorted(json.loads(files["starter/assignments.json"])["assignments"]) == ["cam", "fcn"]
    assert "`patches`" not in files["STUDENT_README.md"] and "`fcn`" in files["STUDENT_README.md"]
    with pytest.raises(SystemExit, match="unknown assignment"):
        release.bundle_files(["fcn", "nope"])


def test_bundle_is_reproducible(tmp_path):
    """Do the same sources always give the same zip bytes (fixed order and timestamps)?"""
    first = release.write_bundle(release.bundle_files(["fcn"]), tmp_path / "a.zip")
    second = release.write_bundle(release.bundle_files(["fcn"]), tmp_path / "b.zip")
    assert first.read_bytes() == second.read_bytes()


def test_unpacked_bundle_works_without_the_repository(tmp_path):
    """Unpacked on its own, does `python -m starter.submit` run from the bundle (no grader, no solutions) and judge a notebook?"""
    out = release.write_bundle(release.bundle_files(["fcn"]), tmp_path / "bundle.zip")
    with zipfile.ZipFile(out) as bundle:
        bundle.extractall(tmp_path)
    kit = tmp_path / "segkit"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(kit)
    probe = subprocess.run(
        [sys.executable, "-c", "import starter, importlib.util as u; print(starter.__file__, u.find_spec('grader'))"],
        cwd=kit,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.split() == [str(kit / "starter" / "__init__.py"), "None"], probe.stdout + probe.stderr
    completed = subprocess.run(
        [sys.executable, "-m", "starter.submit", "--check"],
        cwd=kit,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1 and "fcn: not started" in completed.stdout, completed.stderr
    solution = (REPO_ROOT / "solutions" / "fcn" / "fcn.ipynb").read_bytes()
    (kit / "notebooks" / "fcn" / "fcn.ipynb").write_bytes(solution)
    completed = subprocess.run(
        [sys.executable, "-m", "starter.submit", "--student", "ivy"],
        cwd=kit,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert (kit / "ivy.zip").is_file()


def test_a_copied_piece_of_a_hidden_check_is_found():
    """Would the window search above find three consecutive lines of a hidden check pasted into a file?"""
    windows = hidden_check_windows()
    path = next((REPO_ROOT / "assignments").glob("*/test_*.py"))
    lines = [line for line in _code_lines(path.read_text(encoding="utf-8"))]
    pasted = "x = 1\n" + "\n".join(f"    {line}" for line in lines[10:13]) + "\n"
    assert any(window in "\n".join(_code_lines(pasted)) for window in windows)
