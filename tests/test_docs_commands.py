"""Every command that README.md and docs/*.md tell a reader to type (issue 27: docs true by construction).

Commands are read from fenced shell blocks and from inline code that starts like a command. Cheap ones
(help, `make help`, `segkit check`, the sandbox probe) run; the others (grading, results, proofs) are
checked without running: a `make` target exists, takes the variables the docs give it, and hands
`segkit` options its real argument parser accepts (`make -n`, then the parser); a `bin/segkit`,
`python -m MODULE` or `python bench/x.py` command is parsed by the real parser of that program.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# `make test` runs these tests under make: its job-server flags must not reach the makes started here.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LAUNCHER = REPO_ROOT / "bin" / "segkit"

# What a documented command starts with when it is one of the kit's own (other lines: unshare, nbgrader, ...).
KIT_COMMAND = re.compile(
    r"^(make|bin/segkit|segkit|python -m \S+|python bench/\S+|pytest|PYTHONPATH=\S+ \$PY -m \S+)(\s|$)"
)
# A tool named in prose, not a command to type.
TOOL_NAMES = {"make", "segkit", "bin/segkit", "python -m segkit", "python -m ..."}
# Placeholders the docs write in capitals or brackets, and a value each that the parsers accept.
PLACEHOLDERS = {
    "<a>": "fcn",
    "<assignment>": "fcn",
    "<unit>": "fcn_iou",
    "<out>": "out",
    "{1..N}": "1",
    "$SLURM_CPUS_PER_TASK": "2",
    "K/N": "1/2",
    "SHARD_DIR...": "shard",
    "YOUR_ID": "alice",
}
WORD_PLACEHOLDERS = {
    "NAME": "demo",
    "UNIT": "fcn_iou",
    "ID": "alice",
    "COURSE": "course",
    "DIR": "dir",
    "SUBMISSIONS": "submitted",
    "FOLDER": "submitted",
    "OUT": "out",
    "N": "2",
    "VERB": "check",
}


@dataclass(frozen=True)
class DocCommand:
    """One command as a doc states it, and where."""

    doc: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def _strip_comment(line: str) -> str:
    """A shell line without its trailing `# comment` (a `#` inside quotes stays)."""
    quote = ""
    for i, ch in enumerate(line):
        if ch in "\"'" and (not quote or quote == ch):
            quote = "" if quote else ch
        elif ch == "#" and not quote and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _fenced_commands(lines: list[str]) -> Iterator[tuple[int, str]]:
    """Commands in ``` / ```bash / ```sh blocks; in a block with `$ ` prompts only the prompted lines."""
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
        if fence.group(1) in {"", "bash", "sh", "shell", "console"}:
            block = lines[i + 1 : end]
            prompted = any(line.startswith("$ ") for line in block)
            pending, start = "", 0
            for k, line in enumerate(block):
                if prompted and not pending:
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                if not pending:
                    start = i + 2 + k
                text = _strip_comment(line)
                if text.endswith("\\"):
                    pending += text[:-1] + " "
                    continue
                yield start, " ".join((pending + text).split())
                pending = ""
        i = end + 1


def _inline_commands(text: str) -> Iterator[tuple[int, str]]:
    """Inline code spans (possibly wrapped over two lines) that read as a command."""
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        span = " ".join(match.group(1).split())
        yield text.count("\n", 0, match.start()) + 1, span


def documented_commands() -> list[DocCommand]:
    """Every kit command stated in README.md and docs/*.md, in order."""
    found = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        fenced = list(_fenced_commands(text.splitlines()))
        outside = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M | re.S)
        for line, command in [*fenced, *_inline_commands(outside)]:
            if KIT_COMMAND.match(command) and command not in TOOL_NAMES:
                found.append(DocCommand(str(path.relative_to(REPO_ROOT)), line, command))
    return found


def _argv(command: str) -> list[str]:
    """The words of a documented command with placeholders filled and `[optional]`/`...` marks removed."""
    for mark, value in PLACEHOLDERS.items():
        command = command.replace(mark, value)
    command = re.sub(r"\[([^\[\]]*)\]", r"\1", command)
    command = re.sub(r"(?<=\w)\|\w+", "", command)  # before|after: one of the alternatives
    words = [w for w in shlex.split(command) if w not in {"...", "[", "]"}]
    return [_fill(w) for w in words]


def _fill(word: str) -> str:
    """A placeholder word (NAME) or variable value (JOBS=N) replaced by a value its parser accepts."""
    name, eq, value = word.rpartition("=")
    return f"{name}={WORD_PLACEHOLDERS.get(value, value)}" if eq else WORD_PLACEHOLDERS.get(word, word)


# -- parsing with the real parsers, without running -------------------------------------------------------
class _Parsed(Exception):
    """Raised once a program's argument parser accepted its arguments: nothing after the parse runs."""


@contextlib.contextmanager
def _parse_only() -> Iterator[None]:
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise _Parsed

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop):
        yield


def _rejection(entry: Callable[[], object]) -> str | None:
    """None when `entry` reached an accepted parse (or printed its help); else what its parser said."""
    err = io.StringIO()
    try:
        with _parse_only(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            entry()
    except _Parsed:
        return None
    except SystemExit as stop:
        return None if stop.code in (0, None) else (err.getvalue().strip().splitlines() or ["exit"])[-1]
    return "ran without parsing any arguments"


def _segkit_rejection(argv: list[str]) -> str | None:
    from segkit.cli import VERBS, main

    if not argv or argv[0] in {"-h", "--help", "help"}:
        return None  # segkit's own verb list, printed without a parser
    if argv[0] not in VERBS:
        return f"no verb {argv[0]!r}"
    if len(argv) == 1:
        return None  # a verb named in prose (`bin/segkit collect`): its required arguments follow elsewhere
    with mock.patch.object(sys, "argv", ["segkit", *argv]):
        return _rejection(lambda: main(argv))


def _module_rejection(module: str, argv: list[str]) -> str | None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return f"no module {module}"
    with mock.patch.object(sys, "argv", [module, *argv]), warnings.catch_warnings():
        # runpy warns when an earlier check imported the module already; it runs the same code either way.
        warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)
        return _rejection(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True))


def _script_rejection(script: str, argv: list[str]) -> str | None:
    path = REPO_ROOT / script
    if not path.is_file():
        return f"no file {script}"
    if "parse_args" not in path.read_text(encoding="utf-8"):
        return f"{script} takes no arguments" if argv else None
    with mock.patch.object(sys, "argv", [str(path), *argv]):
        return _rejection(lambda: runpy.run_path(str(path), run_name="__main__"))


def command_rejection(command: str) -> str | None:
    """Why a documented `segkit`/`python` command would not be accepted, or None (parsed, not run)."""
    words = _argv(command)
    while words and re.match(r"^[A-Z_]+=", words[0]):  # PYTHONPATH=. $PY -m ...
        words = words[1:]
    if words[:1] == ["$PY"]:
        words = ["python", *words[1:]]
    if words[0] in {"segkit", "bin/segkit"}:
        return _segkit_rejection(words[1:])
    if words[:3] == ["python", "-m", "segkit"]:
        return _segkit_rejection(words[3:])
    if words[:3] == ["python", "-m", "pytest"] or words[0] == "pytest":
        missing = [w for w in words if w.startswith("tests/") and not (REPO_ROOT / w.split("::")[0]).exists()]
        return f"no test file {missing[0]}" if missing else None
    if words[:2] == ["python", "-m"]:
        return _module_rejection(words[2], words[3:])
    if words[0] == "python":
        return _script_rejection(words[1], words[2:])
    return f"not a kit command: {command}"


# -- make ------------------------------------------------------------------------------------------------
def _make_targets_and_variables() -> tuple[set[str], set[str]]:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", makefile, flags=re.M))
    variables = set(re.findall(r"\$\((\w+)\)", makefile)) | set(re.findall(r"^(\w+)\s*[?:]?=", makefile, flags=re.M))
    return targets, variables


def _segkit_calls_of(make_words: list[str]) -> list[list[str]]:
    """The `segkit` argument lists a make command would run, from `make -n` (nothing runs)."""
    shown = subprocess.run(
        ["make", "-n", "--no-print-directory", *make_words],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=CLEAN_ENV,
    )
    assert shown.returncode == 0, f"make -n {' '.join(make_words)}: {shown.stderr.strip()}"
    script = re.sub(r"\\\n\s*", " ", shown.stdout)
    calls = []
    for line in script.splitlines():
        for part in line.split(";"):
            if " -m segkit " not in part:
                continue
            part = re.sub(r"\$\([^()]*\)", "x", part).replace("$a", "fcn")  # the gradescope loop's shell
            calls.append(shlex.split(part.split(" -m segkit ", 1)[1]))
    return calls


def make_rejection(command: str) -> str | None:
    """Why a documented `make ...` would fail before it starts working, or None."""
    targets, variables = _make_targets_and_variables()
    words = [w for w in _argv(command)[1:] if not w.startswith("-")]
    named = [w for w in words if "=" not in w]
    for word in named:
        if word not in targets:
            return f"no make target {word!r}"
    for word in words:
        if "=" in word and word.split("=", 1)[0] not in variables:
            return f"the Makefile never reads {word.split('=', 1)[0]}"
    for call in _segkit_calls_of(words):
        why = _segkit_rejection(call)
        if why:
            return f"runs `segkit {' '.join(call)}`: {why}"
    return None


# -- what runs for real ------------------------------------------------------------------------------------
def is_cheap(command: str) -> bool:
    """Commands the tests execute: help texts, the host probe, the drift/completeness check, venv-path."""
    words = command.split()  # as written: `bin/segkit VERB` is a pattern, not a command to run
    return (
        "--help" in words
        or words in (["make", "help"], ["make", "-s", "venv-path"], ["make", "venv-path"])
        or words[-2:] == ["-m", "grader.sandbox"]
        or words in (["segkit", "check"], ["bin/segkit", "check"], ["bin/segkit"], ["bin/segkit", "--help"])
    )


def _run_for_real(command: str) -> subprocess.CompletedProcess:
    words = _argv(command)
    env = {**CLEAN_ENV, "PYTHONPATH": str(REPO_ROOT), "SEGKIT_PYTHON": sys.executable}
    if words[0] == "segkit":
        words = ["bin/segkit", *words[1:]]
    if words[0] == "python":
        words = [sys.executable, *words[1:]]
    if words[0] == "PYTHONPATH=.":
        words = [sys.executable, *words[2:]]
    return subprocess.run(words, cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=120)


# -- tests -------------------------------------------------------------------------------------------------
COMMANDS = documented_commands()


def test_the_docs_are_read_for_commands():
    """Are commands found in the README and the guides (so that an empty scan cannot pass the tests below)?"""
    docs = {c.doc for c in COMMANDS}
    assert {"README.md", "docs/instructor-guide.md", "docs/adding-an-assignment.md"} <= docs, docs
    assert sum(c.text.startswith("make ") for c in COMMANDS) > 20
    assert sum(c.text.startswith("bin/segkit ") for c in COMMANDS) > 10


def test_every_documented_segkit_command_is_the_launcher():
    """Is every `segkit` command in the docs spelled `bin/segkit`, which works after `make setup` in every clone?"""
    # docs/results.md is written by `segkit results` (segkit/results.py), which spells it without bin/.
    bare = [str(c) for c in COMMANDS if c.text.startswith("segkit ") and c.doc != "docs/results.md"]
    assert not bare, "write bin/segkit (README: the segkit command):\n" + "\n".join(bare)


def test_every_documented_make_command_exists():
    """Does every documented `make` command name a target and variables of the Makefile, and hand segkit options
    its parser accepts (read from `make -n`, nothing runs)?"""
    wrong = []
    for command in dict.fromkeys(c.text for c in COMMANDS if c.text.startswith("make")):
        why = make_rejection(command)
        if why:
            wrong += [f"{c}\n    {why}" for c in COMMANDS if c.text == command]
    assert not wrong, "\n".join(wrong)


def test_every_documented_program_command_parses():
    """Is every documented `bin/segkit`, `python -m ...` and `python bench/...` command accepted by that program's
    own argument parser (parsed with the real parser, nothing after the parse runs)?"""
    wrong = []
    for command in dict.fromkeys(c.text for c in COMMANDS if not c.text.startswith("make") and not is_cheap(c.text)):
        why = command_rejection(command)
        if why:
            wrong += [f"{c}\n    {why}" for c in COMMANDS if c.text == command]
    assert not wrong, "\n".join(wrong)


def test_a_wrong_command_is_rejected():
    """Do the checks above catch a verb, an option, a target and a variable that do not exist?"""
    assert command_rejection("bin/segkit grade --no-such-option") is not None
    assert command_rejection("bin/segkit regrade") is not None
    assert command_rejection("python -m grader.no_such_module") is not None
    assert make_rejection("make no-such-target") is not None
    assert make_rejection("make similarity NO_SUCH_VARIABLE=1") is not None
    assert command_rejection("bin/segkit grade --assignment fcn --force") is None


def test_cheap_documented_commands_run():
    """Does every cheap documented command (help texts, `make help`, `segkit check`, the sandbox probe) exit 0?"""
    cheap = list(dict.fromkeys(c.text for c in COMMANDS if is_cheap(c.text)))
    assert any("check" in c for c in cheap) and any("grader.sandbox" in c for c in cheap), cheap
    failed = []
    for command in cheap:
        done = _run_for_real(command)
        # The sandbox probe answers "none here" with exit 1 on a host that cannot sandbox: that is its answer.
        no_sandbox = "grader.sandbox" in command and "No sandbox layer works here" in done.stdout
        if done.returncode != 0 and not no_sandbox:
            failed.append(f"{command}: exit {done.returncode}\n{done.stderr[-2000:]}")
    assert not failed, "\n".join(failed)


def _fake_environment(root: Path, clone: Path) -> None:
    """The venv `make venv-path` names under VENV_ROOT=root: a python that is this test's interpreter."""
    venv = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(clone), "venv-path", f"VENV_ROOT={root}"],
        capture_output=True,
        text=True,
        check=True,
        env=CLEAN_ENV,
    ).stdout.strip()
    python = Path(venv, "bin", "python")
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)


def test_the_launcher_runs_its_own_clone(tmp_path):
    """Does `bin/segkit` of a clone run that clone's segkit in the lock-keyed environment, from any folder (here from
    the main checkout, whose own segkit/ must not shadow it), and say to run `make setup` when there is none?"""
    clone = tmp_path / "clone"
    (clone / "bin").mkdir(parents=True)
    for name in ("Makefile", "requirements-lock.txt", "bin/segkit"):
        shutil.copy2(REPO_ROOT / name, clone / name)
    shutil.copytree(REPO_ROOT / "segkit", clone / "segkit", ignore=shutil.ignore_patterns("__pycache__"))
    cli = clone / "segkit" / "cli.py"
    cli.write_text(cli.read_text().replace("the course kit's one command", "the CLONE's one command", 1))
    env = {k: v for k, v in CLEAN_ENV.items() if k not in {"SEGKIT_PYTHON", "PYTHONPATH"}}

    missing = subprocess.run(
        [str(clone / "bin" / "segkit"), "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
        env={**env, "VENV_ROOT": str(tmp_path / "none")},
    )  # fmt: skip
    assert missing.returncode == 2 and "make setup" in missing.stderr, missing.stderr

    _fake_environment(tmp_path / "venvs", clone)
    shown = subprocess.run(
        [str(clone / "bin" / "segkit"), "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
        env={**env, "VENV_ROOT": str(tmp_path / "venvs")},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "the CLONE's one command" in shown.stdout and "grade" in shown.stdout


@pytest.mark.parametrize("doc", ["README.md", "docs/instructor-guide.md"])
def test_the_launcher_is_explained(doc):
    """Does the README say what `bin/segkit` is, and the instructor guide point to it?"""
    assert "bin/segkit" in (REPO_ROOT / doc).read_text(encoding="utf-8")


def test_docs_quote_the_figure_files():
    """Does every figures block of the docs equal what `segkit docs` renders from docs/figures/*.json (the benches'
    own files), so that a quoted figure cannot drift from the measurement it names?"""
    from segkit.docs import render_docs

    stale = [str(r.path.relative_to(REPO_ROOT)) for r in render_docs() if r.changed]
    assert not stale, f"run `bin/segkit docs`: {stale}"


def test_a_new_measurement_changes_the_doc():
    """When a bench writes a new figure, does the rendered doc quote it (and an unknown block name fail loudly)?"""
    from segkit.docs import load_figures, render_text

    figures = load_figures()
    figures["grade_speed"]["figures"]["worker_start_s"]["forked"] = 9.87
    guide = (REPO_ROOT / "docs" / "instructor-guide.md").read_text(encoding="utf-8")
    assert "9.87 s" in render_text(guide, figures) and "9.87 s" not in guide
    with pytest.raises(KeyError, match="no-such-block"):
        render_text("<!-- figures:start no-such-block -->\nx\n<!-- figures:end -->", figures)


def test_a_bench_writes_a_figure_file_the_docs_render(tmp_path, monkeypatch):
    """Does `write_figures` (what the benches call) record the figures with their command, date and commit, in a
    file `segkit docs` renders from?"""
    import segkit.docs as docs

    monkeypatch.setattr(docs, "FIGURES_DIR", tmp_path)
    seeded = docs.load_figures()["grade_speed"]
    docs.write_figures("grade_speed", "python bench/grade_speed.py --starts 7", seeded["figures"])
    written = docs.load_figures(tmp_path)["grade_speed"]
    assert written["command"] == "python bench/grade_speed.py --starts 7" and written["commit"] == docs.current_commit()
    assert written["measured"] == datetime.date.today().isoformat() and written["figures"] == seeded["figures"]
    assert "--starts 7" in docs.worker_start(docs.load_figures(tmp_path))


@pytest.mark.parametrize("doc", ["quality.md", "mutation-report.md", "mutation-report-new-units.md"])
def test_generated_reports_name_their_commit(doc):
    """Does each report made by a slow generator say which commit and date it was generated from, so that a reader
    knows its figures may predate the code?"""
    head = (REPO_ROOT / "docs" / doc).read_text(encoding="utf-8")[:600]
    assert re.search(r"Generated from commit [0-9a-f]{7,} on \d{4}-\d{2}-\d{2}", head), head


KIT_FOLDERS = ("grader", "segkit", "starter", "bench", "docs", "tests", "assignments", "solutions", "notebooks")
KIT_FOLDERS += ("integrations", "data_scripts", "bin")


def _named_paths_and_modules(text: str) -> Iterator[tuple[int, str]]:
    """Inline code outside fenced blocks that names a file of the kit (`grader/cli.py`) or a module (`grader.cli`);
    names with placeholders (`assignments/<a>/`, `NAME`) are patterns, not names, and are left out."""
    outside = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M | re.S)
    for match in re.finditer(r"(?<!`)`([^`\s]+)`(?!`)", outside):
        name = match.group(1).split("::")[0]
        if re.search(r"[<>*{}$]|NAME|/demo/", name):  # demo: the walkthrough's scaffolded example
            continue
        if re.match(rf"^({'|'.join(KIT_FOLDERS)})/", name) or re.match(
            r"^(grader|segkit|starter|integrations|data_scripts)(\.\w+)+$", name
        ):
            yield outside.count("\n", 0, match.start()) + 1, name


def _exists(name: str) -> bool:
    import importlib
    import importlib.util

    if "/" in name:
        return (REPO_ROOT / name).exists()
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        module = ".".join(parts[:k])
        try:
            if importlib.util.find_spec(module) is None:
                continue
            found = importlib.import_module(module)
        except ImportError:
            continue
        for attribute in parts[k:]:
            found = getattr(found, attribute, None)
        return found is not None
    return False


def test_every_named_file_and_module_exists():
    """Does every file, folder and module the docs name in inline code exist (a rename leaves no stale name behind)?
    Reports made by a slow generator are left out: they name the commit they describe."""
    missing = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        if "Generated from commit" in text[:600] or path.name == "results.md":
            continue
        missing += [
            f"{path.relative_to(REPO_ROOT)}:{line}: {name}"
            for line, name in _named_paths_and_modules(text)
            if not _exists(name)
        ]
    assert not missing, "\n".join(missing)
    assert not _exists("grader/mutate.py") and not _exists("grader.mutate") and _exists("grader.cli.build_parser")


def test_make_help_names_every_target():
    """Does `make help` name every target of the Makefile (a target nobody can find is a doc that went stale)?"""
    targets, _ = _make_targets_and_variables()
    shown = subprocess.run(["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True, env=CLEAN_ENV)
    assert shown.returncode == 0, shown.stderr
    missing = sorted(t for t in targets - {"help"} if not re.search(rf"\bmake {re.escape(t)}\b", shown.stdout))
    assert not missing, f"make help does not name: {missing}"
