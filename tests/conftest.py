"""One grading run shared by the end-to-end proofs (tests/test_grading.py, test_hostile.py,
test_specificity.py): every submission they need is graded together by a single
`python -m grader` pool, so the two cores stay busy and references are loaded once.

Submissions (nbgrader layout, `<student>/<assignment>/<assignment>.ipynb`):
- per assignment: the four bundled examples (always: `make test`);
- with `proof` tests (`make proof`): one single-bug notebook per BUGS entry (`mutant-<grade_id>`),
  two all-alternatives notebooks (`alternative-0`, `alternative-1`), and the hostile/malformed
  corpus of segkit/proof/hostile.py on the assignment whose assignment.toml says `corpus = true` next to an untouched copy of its
  solution (`control-solution`).
Single-bug notebooks of the FCN assignment skip the VGG-sized checks of units they do not
touch (`--units-map`): each still runs every cheap unit's checks, so leaks into other units
are still caught, for a third of the cost.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sandbox_helpers import LoopbackListener

# One compute thread per test process when pytest-xdist runs as many processes as there are cores:
# everything these processes start (notebook kernels, the grading pool's trusted processes) inherits
# it. With torch's default of one thread per core, a notebook kernel spinning two OpenMP threads on
# cores busy with the other process's grading ran 4x slower (FCN's fast mode: 191 s against 44 s
# alone); sandboxed workers are single-threaded anyway (grader/sandbox.py).
if os.environ.get("PYTEST_XDIST_WORKER") and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) >= (
    os.cpu_count() or 1
):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

from grader.assignments import REPO_ROOT, assignment_names, load_assignment, read_notebook
from segkit.proof import assignment_module
from segkit.proof.alternatives import alternative_notebook, assignments_with_alternatives
from segkit.proof.examples import buggy_sources, example_notebooks, replace_sources
from segkit.proof.hostile import build_corpus, corpus_assignment

# Limits of the shared run: generous for honest code even while the test processes share the cores
# (each check takes well under 10 s alone); make test grades one hostile example, which does not hang.
RUN_OPTIONS = ["-j", "2", "--cell-timeout", "60", "--probe-timeout-cap", "60", "--memory-mb", "3072"]


def _write(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# `make test` runs tests on two processes (pytest-xdist, `-n 2 --dist loadgroup`). The files below
# build a shared fixture that costs minutes (a grading run, the escape corpus, an nbgrader course,
# the release bundle, a sandboxed worker): all their tests go to one process, so it is built once.
# Every other test goes wherever a process is free. The longest files come first, so that the two
# processes finish together.
GROUPED_FILES = (
    "test_grading.py",
    "test_sandbox_escape.py",
    "test_nbgrader_interop.py",
    "test_gradescope.py",
    "test_release.py",
    "test_sandbox.py",
)
LONGEST_FIRST = (
    "test_grading.py",
    "test_sandbox_escape.py",
    "test_assignments.py",
    "test_notebooks.py",
    "test_nbgrader_interop.py",
    "test_gradescope.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` by file name. (xdist's own `xdist_group` marks group by rewriting
    `item._nodeid`, which pytest 9.2's nodes no longer read: the marks are silently ignored.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupedFiles(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return file if Path(file).name in GROUPED_FILES else nodeid

    return GroupedFiles(config, log)


@pytest.fixture(scope="session")
def grading_run(tmp_path_factory, request):
    # Single-bug notebooks, alternatives, the hostile corpus and the hostile examples of all but one
    # assignment are graded only when the `proof` tests that read them are collected (`make proof`,
    # `make quality`): CI (`make test`) keeps to 10 minutes with the solution, untouched and buggy
    # examples of every assignment and the hostile example of the corpus assignment. (Every hostile
    # example hangs or kills its worker in each unit: 30-100 s each; the escape corpus, graded as root
    # and as an ordinary user in make test, covers the sandbox itself.)
    proofs = {item.path.name for item in request.session.items if item.get_closest_marker("proof")}
    with_mutants = "test_grading.py" in proofs
    hostile_examples = set(assignment_names()) if with_mutants else {corpus_assignment()}
    with_alternatives = "test_specificity.py" in proofs
    with_corpus = "test_hostile.py" in proofs
    root = tmp_path_factory.mktemp("grading")
    submitted = root / "submitted"
    units_map: dict[str, list[str]] = {}
    kinds: dict[tuple[str, str], str] = {}
    for name in assignment_names():
        all_units = [u.grade_id for u in load_assignment(name).auto_units]
        notebooks = example_notebooks(name)
        if name not in hostile_examples:
            del notebooks["example-hostile"]
        solution = read_notebook(load_assignment(name).solution_path)
        for grade_id, source in (
            buggy_sources(solution, assignment_module(name, "examples").BUGS).items() if with_mutants else ()
        ):
            student = f"mutant-{grade_id}"
            notebooks[student] = replace_sources(solution, {grade_id: source})
            # Units whose checks build large networks (assignment.toml `expensive_units`) are checked only in
            # their own single-bug notebook.
            expensive = load_assignment(name).config.expensive_units
            if expensive & set(all_units):
                units_map[student] = [u for u in all_units if u == grade_id or u not in expensive]
        if with_alternatives and name in assignments_with_alternatives():
            for k in (0, 1):
                notebooks[f"alternative-{k}"] = alternative_notebook(name, k)
        for student, notebook in notebooks.items():
            _write(submitted / student / name / f"{name}.ipynb", json.dumps(notebook).encode())
            kinds[(student, name)] = student.split("-")[0]

    listener = LoopbackListener()
    corpus_dir = root / "corpus"
    hostile_assignment = corpus_assignment()
    corpus = build_corpus(hostile_assignment, corpus_dir, port=listener.port) if with_corpus else {}
    for student in corpus:
        _write(
            submitted / student / hostile_assignment / f"{hostile_assignment}.ipynb",
            (corpus_dir / f"{student}.ipynb").read_bytes(),
        )
    if with_corpus:
        _write(
            submitted / "control-solution" / hostile_assignment / f"{hostile_assignment}.ipynb",
            load_assignment(hostile_assignment).solution_path.read_bytes(),
        )
    marker = Path("/tmp/segkit-hostile-was-here")
    marker.unlink(missing_ok=True)

    (root / "units-map.json").write_text(json.dumps(units_map))
    out = root / "grades"
    command = [
        sys.executable,
        "-m",
        "grader",
        str(submitted),
        "--out",
        str(out),
        *RUN_OPTIONS,
        "--units-map",
        str(root / "units-map.json"),
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    try:
        run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=3000)
    finally:
        listener.close()
    results = {}
    for path in (out / "results").glob("*/*.json"):
        result = json.loads(path.read_text())
        results[(result["student_id"], result["assignment"])] = result
    return {
        "out": out,
        "submitted": submitted,
        "results": results,
        "run": run,
        "command": command,
        "env": env,
        "corpus": corpus,
        "listener": listener,
        "marker": marker,
        "units_map": units_map,
        "kinds": kinds,
    }


class StaticFileServer(http.server.ThreadingHTTPServer):
    """A file server on 127.0.0.1 for the data-script tests: `files` maps paths to bytes,
    `requests` records every path asked for."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _StaticHandler)
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


class _StaticHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def static_http_server():
    httpd = StaticFileServer()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
