"""The sandbox-escape corpus (segkit/proof/hostile.py, `escape=True`), graded four times: as root and as
an ordinary uid in the bubblewrap layer, and both again where no user namespace can be made (the
Landlock layer: Ubuntu 24.04 without an AppArmor profile, Docker, Gradescope), each time by a fresh
copy of the kit, next to decoy answer keys planted where a deny-list never looks, a loopback
listener and a process of the grading user.

Every attack must earn nothing on the unit it attacks while the honest control keeps full marks
and the untouched control keeps zero; nothing may be read, written or signalled outside the
worker's scratch folder; root and user runs of a layer report the same protections, and report.md
lists exactly what that layer provides (the rest as NOT active).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sandbox_helpers import TEST_UID, LoopbackListener, as_user_command, copy_kit, without_user_namespaces

from grader.assignments import REPO_ROOT, load_assignment
from grader.sandbox import PROTECTION_TEXT, host_sandbox
from grader.sandbox.protections import NAMESPACE_ONLY
from segkit.proof.hostile import ESCAPES, build_corpus, corpus_assignment, hostile_target

pytestmark = [pytest.mark.slow]
ASSIGNMENT = corpus_assignment()
# Honest cells only define functions (well under a second, but the setup cell imports torch while the
# test processes share the cores); the cap bounds a stuck attack.
RUN_OPTIONS = ["-j", "2", "--cell-timeout", "30", "--probe-timeout-cap", "30", "--memory-mb", "2048"]
STUDENTS = [f"attack-{a.name}" for a in ESCAPES]
OLD = time.time() - 5 * 86400  # decoy access times are set this far back: any read moves them (relatime)
DECOY_ENV = "SEGKIT_OLD_COURSE_KIT"
MARKERS = [
    Path("/tmp/segkit-hostile-was-here"),
    Path("/var/tmp/segkit-hostile-was-here"),
    Path("/dev/shm/segkit-hostile-was-here"),
]


def _plant_decoy(folder: Path):
    """A full answer key: solutions/ and grader/ of the kit, readable by everyone."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("solutions", "grader"):
        shutil.copytree(REPO_ROOT / part, folder / part, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [folder, *folder.rglob("*"), *folder.parents[:2]]:  # the folders made for it, too
        if path.is_dir() and path not in (Path("/home"), Path("/srv"), Path("/var/tmp"), Path("/var")):
            os.chmod(path, 0o755)
        elif path.is_file():
            os.chmod(path, 0o644)
            os.utime(path, (OLD, path.stat().st_mtime))


def _fingerprint(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)
    }


def _atimes(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_atime for p in root.rglob("*") if p.is_file()}


def _grade(kit: Path, submitted: Path, out: Path, home: Path, decoy_env: Path, who: str, units_map: Path):
    user, landlock = who.endswith("user"), who.startswith("landlock")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONPATH": str(kit),
        "LANG": "C.UTF-8",
        DECOY_ENV: str(decoy_env),
    }
    argv = [
        sys.executable,
        "-m",
        "grader",
        str(submitted),
        "--out",
        str(out),
        *RUN_OPTIONS,
        "--units-map",
        str(units_map),
    ]
    stage = None
    if landlock:
        # As root the runtime (under /root) is staged where the spare uid reaches it, as for a user.
        env["SEGKIT_SANDBOX_LAYER"] = "landlock"
        argv, stage = as_user_command(argv, uid=TEST_UID if user else 0, env=env)
        argv = without_user_namespaces(argv)
    elif user:
        argv, stage = as_user_command(argv, env=env)
    try:
        return subprocess.run(argv, cwd=kit, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        if stage:
            shutil.rmtree(stage, ignore_errors=True)


def _one_run(who: str) -> dict:
    user = who.endswith("user")
    base = Path(tempfile.mkdtemp(prefix=f"segkit-escape-{who}-"))
    os.chmod(base, 0o755)
    tag = f"{who}-{os.getpid()}"
    decoys = [
        Path(f"/home/segkit-decoy-ta-{tag}/old-kit"),
        Path(f"/srv/segkit-decoy-{tag}/kit"),
        Path(f"/var/tmp/segkit-decoy-{tag}/kit"),
    ]
    created = [
        Path(f"/home/segkit-decoy-ta-{tag}"),
        Path(f"/srv/segkit-decoy-{tag}"),
        Path(f"/var/tmp/segkit-decoy-{tag}"),
    ]
    listener = LoopbackListener()
    sleeper = None
    try:
        for decoy in decoys:
            _plant_decoy(decoy)
        kit, out, home, submitted = base / "kit", base / "grades", base / "home", base / "submitted"
        copy_kit(kit)
        home.mkdir()
        corpus = build_corpus(
            ASSIGNMENT,
            base / "corpus",
            port=listener.port,
            escapes_only=True,
            grades_dir=str(out),
            decoys=tuple(str(d) for d in decoys),
            repo=kit,
        )
        notebooks = {student: (base / "corpus" / f"{student}.ipynb").read_bytes() for student in corpus}
        notebooks["control-solution"] = (REPO_ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes()
        notebooks["control-untouched"] = (REPO_ROOT / "notebooks" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes()
        for student, data in notebooks.items():
            path = submitted / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
            path.parent.mkdir(parents=True)
            path.write_bytes(data)
        # Each attack is checked on the unit it attacks only (half the grading time); the controls on
        # every unit, next to the attacks, in the same run.
        units_map = base / "units-map.json"
        units_map.write_text(json.dumps({student: [hostile_target(ASSIGNMENT)] for student in corpus}))
        if user:
            subprocess.run(["chown", "-R", f"{TEST_UID}:{TEST_UID}", str(base)], check=True)
        for marker in MARKERS:
            marker.unlink(missing_ok=True)
        # A process of the grading user that no submission may kill.
        sleeper = subprocess.Popen(
            (["setpriv", f"--reuid={TEST_UID}", f"--regid={TEST_UID}", "--clear-groups"] if user else [])
            + ["sleep", "900"],
            start_new_session=True,
        )
        kit_before = _fingerprint(kit, skip=("build", "grades", "__pycache__"))
        decoys_before = {str(d): _fingerprint(d) for d in decoys}
        atimes_before = {k: v for d in decoys for k, v in _atimes(d).items()}

        run = _grade(kit, submitted, out, home, decoys[2], who, units_map)
        results = {}
        for path in (out / "results").glob("*/*.json"):
            result = json.loads(path.read_text())
            results[result["student_id"]] = result
        resumed = _grade(kit, submitted, out, home, decoys[2], who, units_map)
        resumed_untouched = json.loads((out / "results" / ASSIGNMENT / "control-untouched.json").read_text())
        return {
            "who": who,
            "run": run,
            "resumed": resumed,
            "results": results,
            "corpus": corpus,
            "out": out,
            "resumed_untouched": resumed_untouched,
            "kit_changed": sorted(
                k
                for k, v in _fingerprint(kit, skip=("build", "grades", "__pycache__")).items()
                if kit_before.get(k) != v
            )
            + sorted(set(kit_before) - set(_fingerprint(kit))),
            "decoys_changed": {d: _fingerprint(Path(d)) != before for d, before in decoys_before.items()},
            "decoys_read": sorted(k for d in decoys for k, v in _atimes(d).items() if v != atimes_before.get(k)),
            "decoy_written": any((d / "segkit-hostile-was-here").exists() for d in decoys),
            "received": list(listener.received),
            "markers": [str(m) for m in MARKERS if m.exists()],
            "sleeper_alive": sleeper.poll() is None,
            "report": (out / "report.md").read_text() if (out / "report.md").exists() else "",
            "grades_csv": (out / "grades.csv").read_text() if (out / "grades.csv").exists() else "",
            "out_written": (out / "hostile-was-here").exists(),
        }
    finally:
        listener.close()
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        for folder in created:
            shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def _runs(who_list: list[str]) -> dict:
    if os.geteuid() != 0:
        pytest.skip("planting decoys in /home and /srv and borrowing a uid need root (CI runs as root)")
    if not host_sandbox().ok:
        pytest.fail(f"this host cannot build the grading sandbox: {host_sandbox().reason}")
    # /home and /srv are made (and removed again) here when missing, not by the runs, which go side
    # by side: each spends much of its time waiting on attacks that sleep until a time limit.
    new_tops = [top for top in (Path("/home"), Path("/srv")) if not top.exists()]
    for top in new_tops:
        top.mkdir(mode=0o755)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(who_list)) as pool:
            runs = dict(zip(who_list, pool.map(_one_run, who_list)))
    finally:
        for top in new_tops:
            try:
                top.rmdir()
            except OSError:
                pass
    return runs


@pytest.fixture(scope="module")
def all_runs():
    """All four runs side by side (each spends most of its time waiting on attacks that sleep until
    a time limit, so four together take little longer than two)."""
    return _runs(WHO)


@pytest.fixture(scope="module")
def bubblewrap_runs(all_runs):
    return {who: all_runs[who] for who in BUBBLEWRAP}


@pytest.fixture(scope="module")
def landlock_runs(all_runs):
    return {who: all_runs[who] for who in LANDLOCK}


@pytest.fixture
def escape_runs(all_runs):
    return all_runs


BUBBLEWRAP = ["root", "user"]
LANDLOCK = ["landlock-root", "landlock-user"]  # user namespaces disabled
WHO = BUBBLEWRAP + LANDLOCK
# In a pid namespace the worker's process group is 1, and kill(-1) spares the caller; without one
# (the Landlock layer) the same call is kill(own group), which the worker cannot survive.
KILLS_ITSELF = {(who, "attack-signal_everything") for who in LANDLOCK}


@pytest.mark.parametrize("who", WHO)
def test_the_run_finishes_with_a_grade_for_everyone(escape_runs, who):
    """Does the run finish normally, with a grade for every attack and both controls?"""
    run = escape_runs[who]
    assert run["run"].returncode == 0, run["run"].stderr[-3000:]
    assert set(run["results"]) == {*STUDENTS, "control-solution", "control-untouched"}


@pytest.mark.parametrize("who", WHO)
def test_controls_keep_their_grades(escape_runs, who):
    """Does the honest control keep full marks and the untouched notebook zero, next to the attacks?"""
    results = escape_runs[who]["results"]
    assert results["control-solution"]["total"] == load_assignment(ASSIGNMENT).max_points
    assert results["control-untouched"]["total"] == 0


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("student", STUDENTS)
def test_each_escape_earns_nothing(escape_runs, who, student):
    """Does each escape attempt earn nothing on the unit it attacks (checked on that unit only), or, for an attack
    whose cell asserts it saw nothing, keep that unit's points because it indeed saw nothing?"""
    run = escape_runs[who]
    expect = run["corpus"][student]["expect"]
    result = run["results"][student]
    target = result["units"][hostile_target(ASSIGNMENT)]
    assert result["checked_units"] == [hostile_target(ASSIGNMENT)]
    if (who, student) in KILLS_ITSELF:
        # Without a pid namespace, SIGKILL to its own process group (kill(-getpgid(0))) reaches the worker
        # itself: its cell crashes. Nothing else was hit (test_no_network_and_no_signals_left_the_sandbox).
        assert target["points"] == 0 and "crashed" in " ".join(t["detail"] for t in target["tests"])
    elif expect == "full":  # the attack's cell asserts it saw nothing, or only harmed itself
        assert target["points"] == target["max_points"], [t["detail"] for t in target["tests"] if not t["passed"]]
    else:
        assert target["points"] == 0


@pytest.mark.parametrize("who", WHO)
def test_no_answer_key_was_read_and_nothing_written(escape_runs, who):
    """Were the decoy answer keys never opened, and no file of the kit, the decoys or the host touched?"""
    run = escape_runs[who]
    assert run["decoys_read"] == []
    assert not any(run["decoys_changed"].values()) and not run["decoy_written"]
    assert run["kit_changed"] == []
    assert run["markers"] == []
    assert not run["out_written"]
    assert run["grades_csv"].count("\n") == len(run["results"]) + 1 and "hostile,1000" not in run["grades_csv"]


@pytest.mark.parametrize("who", WHO)
def test_forged_results_are_not_reused(escape_runs, who):
    """Does a resumed run keep the untouched control at zero (nothing forged in results/)?"""
    run = escape_runs[who]
    assert run["resumed"].returncode == 0, run["resumed"].stderr[-2000:]
    assert "Reusing" in run["resumed"].stdout
    assert run["resumed_untouched"]["total"] == 0 and "forged" not in run["resumed_untouched"]


@pytest.mark.parametrize("who", WHO)
def test_no_network_and_no_signals_left_the_sandbox(escape_runs, who):
    """Did the loopback listener receive nothing, and does the grading user's own process still live?"""
    run = escape_runs[who]
    assert run["received"] == []
    assert run["sleeper_alive"]


def _layer_protections(who: str) -> list[str]:
    """What the layer of run `who` provides: every protection in bubblewrap; in Landlock all but
    the namespace-only ones."""
    return [name for name in PROTECTION_TEXT if not (who.startswith("landlock") and name in NAMESPACE_ONLY)]


@pytest.mark.parametrize("who", WHO)
def test_report_lists_what_the_layer_provides(escape_runs, who):
    """Does report.md list as active exactly what the run's layer provides, the rest as NOT active,
    as root and as an ordinary user alike, and does the control's result carry the same list?"""
    run = escape_runs[who]
    provided = _layer_protections(who)
    for name in PROTECTION_TEXT:
        active, missing = f"- `{name}`:" in run["report"], f"- NOT active: `{name}`:" in run["report"]
        assert (active, missing) == ((True, False) if name in provided else (False, True)), name
    layer = "Landlock" if who.startswith("landlock") else "bubblewrap"
    assert layer in run["report"]
    assert set(run["results"]["control-solution"]["protections"]) == set(provided)


@pytest.mark.parametrize("layer", ["bubblewrap", "landlock"])
def test_root_and_user_report_the_same_protections(layer, request):
    """Is the list of active protections the same whether root or an ordinary user grades, in each layer?"""
    runs = request.getfixturevalue(f"{layer}_runs")
    lists = {who: sorted(run["results"]["control-solution"]["protections"]) for who, run in runs.items()}
    assert len(set(map(tuple, lists.values()))) == 1, lists
    names = {
        who: [line.split("`")[1] for line in run["report"].splitlines() if line.startswith("- `")]
        for who, run in runs.items()
    }
    assert len(set(map(tuple, names.values()))) == 1, names


@pytest.mark.parametrize("who", WHO)
def test_workers_were_forked_from_the_slot_templates(escape_runs, who):
    """Did every worker of both runs (root and an ordinary uid) fork from its slot's pre-imported
    template, so that the corpus above attacked that path, and not fall back to starting from scratch?"""
    stderr = escape_runs[who]["run"].stderr
    assert "from scratch" not in stderr, stderr[-2000:]
