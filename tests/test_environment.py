"""The first cell of every notebook (`starter.environment.setup_notebook`) on Colab, a server and in the grader.

Colab is simulated: a fake `google.colab` module whose `drive.mount` records its calls, pip and
the data preparation replaced by recorders. Nothing here touches the network or installs anything.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import starter.environment as environment
from grader.assignments import assignment_names, cell_source, cells_by_grade_id, load_assignment, read_notebook
from starter.config import get_device, seed_everything

CONVERTED = [
    name
    for name in assignment_names()
    if "setup_notebook(" in dict(load_assignment(name).setup_cells).get(f"{name}_setup", "")
]


def setup_source(name: str, *, released: bool = False) -> str:
    spec = load_assignment(name)
    path = spec.release_path if released else spec.solution_path
    return cell_source(cells_by_grade_id(read_notebook(path))[f"{name}_setup"][0])


@pytest.fixture
def clean_env(monkeypatch):
    for variable in ("SEGKIT_FAST", "SEGKIT_GRADING", "SEGKIT_DATA", "SEGKIT_DRIVE_DIR", "CONDA_DEFAULT_ENV"):
        monkeypatch.setenv(variable, "")  # records the original value, so changes made by setup are undone
        monkeypatch.delenv(variable)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the Colab bootstrap inserts the kit folder

    real_run = subprocess.run

    def no_pip(command, *args, **kwargs):
        if "pip" in command:
            raise AssertionError(f"unexpected pip call {command}")
        return real_run(command, *args, **kwargs)  # e.g. platform.processor() runs `uname -p`

    monkeypatch.setattr(subprocess, "run", no_pip)
    return monkeypatch


@pytest.fixture
def colab(clean_env, tmp_path):
    """A simulated Colab runtime: fake google.colab, a kit folder 'in Drive', recorded pip and data calls."""
    calls = {"mount": [], "pip": [], "prepare": []}
    drive = types.ModuleType("google.colab.drive")
    drive.mount = lambda mount_point, **kwargs: calls["mount"].append(mount_point)
    google = types.ModuleType("google")
    google.__path__ = []
    colab_module = types.ModuleType("google.colab")
    colab_module.__path__ = []
    colab_module.drive = drive
    for name, module in (("google", google), ("google.colab", colab_module), ("google.colab.drive", drive)):
        clean_env.setitem(sys.modules, name, module)

    kit = tmp_path / "drive" / "MyDrive" / "segkit"
    (kit / "starter").mkdir(parents=True)
    clean_env.setenv("SEGKIT_DRIVE_DIR", str(kit))
    installed = {"from": None}

    real_run = subprocess.run

    def fake_pip(command, *args, **kwargs):
        if "pip" not in command:
            return real_run(command, *args, **kwargs)
        calls["pip"].append(command)
        installed["from"] = Path(command[-1])
        return subprocess.CompletedProcess(command, 0, "", "")

    clean_env.setattr(subprocess, "run", fake_pip)
    clean_env.setattr(environment, "_installed_from", lambda distribution=None: installed["from"])

    def fake_prepare(root, progress=True):
        calls["prepare"].append(Path(root))
        (Path(root) / "cmp_facade").mkdir(parents=True, exist_ok=True)
        (Path(root) / "cmp_facade" / "meta.json").write_text("{}")

    preparer = types.ModuleType("fake_preparer")
    preparer.prepare = fake_prepare
    clean_env.setitem(sys.modules, "fake_preparer", preparer)
    clean_env.setitem(
        environment.DATASETS, "cmp_facade", environment.DatasetSetup("cmp_facade", "fake_preparer:prepare")
    )
    return types.SimpleNamespace(calls=calls, kit=kit)


def run_cell(source: str) -> dict:
    namespace = {"__name__": "notebook"}
    exec(compile(source, "<setup cell>", "exec"), namespace)
    return namespace


def test_every_notebook_setup_cell_calls_setup_notebook():
    """Does each notebook's setup cell bootstrap Colab and call setup_notebook for its own assignment?"""
    if not CONVERTED:
        pytest.fail("no setup cell calls starter.environment.setup_notebook")
    for name in assignment_names():
        if name not in CONVERTED:
            continue  # reported by the skip below
        released = setup_source(name, released=True)
        assert f'setup_notebook("{name}", drive_dir=SEGKIT_DIR or None)' in released
        assert '"google.colab" in sys.modules' in released and "SEGKIT_GRADING" in released
    missing = sorted(set(assignment_names()) - set(CONVERTED))
    if missing:
        pytest.skip(f"setup cell not converted yet: {', '.join(missing)}")


def test_colab_mounts_installs_and_downloads_once(colab, capsys):
    """On Colab, does the setup cell mount Drive, pip-install the kit with --no-deps only, and fetch the data once into Drive?"""
    source = setup_source("fcn")
    namespace = run_cell(source)
    assert colab.calls["mount"] == ["/content/drive"]
    assert colab.calls["pip"] == [
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(colab.kit)]
    ]
    assert not any("torch" in part for part in colab.calls["pip"][0])  # Colab's torch/torchvision are never touched
    data = colab.kit / "data"
    assert colab.calls["prepare"] == [data]
    assert str(colab.kit) in sys.path
    assert os.environ["SEGKIT_DATA"] == str(data)
    output = capsys.readouterr().out
    assert "Google Colab" in output and "device" in output and str(data) in output and "cmp_facade: prepared" in output
    for name in ("torch", "nn", "F", "check", "FAST", "device", "PROFILE", "pick", "IGNORE_INDEX"):
        assert name in namespace, f"the setup cell must still define {name}"

    run_cell(source)  # a second run in the same session: nothing to install or download again
    assert len(colab.calls["pip"]) == 1 and colab.calls["prepare"] == [data]
    assert "cmp_facade: ready" in capsys.readouterr().out


def test_colab_fast_mode_installs_but_downloads_nothing(colab, monkeypatch, capsys):
    """In fast mode on Colab, is the kit still installed but no data downloaded?"""
    monkeypatch.setenv("SEGKIT_FAST", "1")
    env = environment.setup_notebook("fcn")
    assert env.kind == "colab" and env.installed and colab.calls["prepare"] == []
    assert "skipped" in env.datasets["cmp_facade"]
    assert "fast mode    on" in capsys.readouterr().out


def test_colab_drive_dir_argument_wins(colab, tmp_path):
    """Does an explicit drive_dir (SEGKIT_DIR in the cell) override $SEGKIT_DRIVE_DIR?"""
    other = tmp_path / "elsewhere"
    (other / "starter").mkdir(parents=True)
    env = environment.setup_notebook("cam", drive_dir=other, download=False, quiet=True)
    assert env.kit_dir == other and colab.calls["pip"][0][-1] == str(other)


def test_colab_without_the_kit_says_what_to_upload(colab, tmp_path):
    """On Colab with no kit in the Drive folder (but `starter` importable from elsewhere), does setup stop with an instruction before installing anything?"""
    colab.kit.joinpath("starter").rmdir()
    with pytest.raises(FileNotFoundError, match="upload the unzipped student bundle"):
        run_cell(setup_source("fcn"))
    with pytest.raises(FileNotFoundError, match="STUDENT_README"):
        environment.setup_notebook("fcn", quiet=True)
    assert colab.calls["pip"] == []


@pytest.mark.parametrize("name", CONVERTED)
def test_colab_cell_without_the_kit_fails_on_a_line_that_says_why(tmp_path, name):
    """On Colab with no kit anywhere, does the cell stop at importing `starter`, on a line whose comment says what to do?"""
    fake_colab = tmp_path / "site" / "google" / "colab"
    fake_colab.mkdir(parents=True)
    (fake_colab.parent / "__init__.py").write_text("")
    (fake_colab / "__init__.py").write_text("")
    (fake_colab / "drive.py").write_text("def mount(mount_point):\n    print('mounted', mount_point)\n")
    cell = tmp_path / "setup_cell.py"
    cell.write_text(setup_source(name, released=True))
    run = "import google.colab, runpy; runpy.run_path('setup_cell.py')"  # Colab has google.colab loaded
    environment_variables = {key: value for key, value in os.environ.items() if not key.startswith("SEGKIT_")}
    environment_variables.update(PYTHONPATH=str(tmp_path / "site"), SEGKIT_DRIVE_DIR=str(tmp_path / "empty"))
    completed = subprocess.run(
        [sys.executable, "-c", run], cwd=tmp_path, env=environment_variables, capture_output=True, text=True
    )
    assert completed.returncode == 1 and "mounted /content/drive" in completed.stdout
    assert "ModuleNotFoundError: No module named 'starter'" in completed.stderr
    assert "The kit is not in SEGKIT_DIR: see STUDENT_README.md" in completed.stderr  # the failing line, as shown


def test_failed_pip_install_is_a_warning(colab, capsys):
    """Does a failing pip install only warn (the kernel imports the kit from sys.path anyway)?"""

    def failing(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "no network")

    assert environment.install_kit(colab.kit, runner=failing) is False
    assert "no network" in capsys.readouterr().err


@pytest.mark.parametrize("name", CONVERTED)
def test_grading_worker_runs_only_imports(colab, monkeypatch, name):
    """With SEGKIT_GRADING=1 (the grader's worker), does the setup cell skip mounting, installing and downloading, even on 'Colab'?"""
    monkeypatch.setenv("SEGKIT_GRADING", "1")
    monkeypatch.setenv("SEGKIT_FAST", "1")
    namespace = run_cell(setup_source(name, released=True))
    assert colab.calls == {"mount": [], "pip": [], "prepare": []}
    assert namespace["setup_notebook"](name).kind == "grading"
    assert str(colab.kit) not in sys.path
    assert namespace["FAST"] is True and isinstance(namespace["device"], torch.device)  # the graded cells use them


@pytest.mark.parametrize("grading", [False, True])
def test_setup_returns_fast_flag_and_device_and_seeds(clean_env, tmp_path, grading):
    """Does setup_notebook hand back FAST and the device (unpacked as `FAST, device = ...`) and seed every generator, also in the grader's worker?"""
    clean_env.setenv("SEGKIT_DATA", str(tmp_path / "data"))
    clean_env.setenv("SEGKIT_GRADING", "1" if grading else "")
    for fast in ("1", ""):
        clean_env.setenv("SEGKIT_FAST", fast)
        random.seed(99)  # a state the seeding must replace
        np.random.seed(99)
        torch.manual_seed(99)
        env = environment.setup_notebook("cam", quiet=True, seed=7)
        drawn = (random.random(), float(np.random.rand()), float(torch.rand(1)))
        flag, device = env
        assert env.kind == ("grading" if grading else "server")
        assert flag is env.fast is (fast == "1") and device == env.device == get_device()
        seed_everything(7)
        assert drawn == (random.random(), float(np.random.rand()), float(torch.rand(1)))


def test_server_installs_nothing_and_explains_missing_data(clean_env, tmp_path, capsys):
    """On a server, does setup install nothing, download nothing by default, and print the command that prepares the data?"""
    clean_env.setenv("SEGKIT_DATA", str(tmp_path / "data"))
    assert not environment.in_colab()
    run_cell(setup_source("fcn"))  # subprocess.run raises if called
    output = capsys.readouterr().out
    assert "nothing installed" in output and "torch" in output and "device" in output
    assert f"python -m data_scripts.cmp_facade --root {tmp_path / 'data'}" in output
    assert not (tmp_path / "data").exists()


def test_server_fast_mode_is_quiet_about_data(clean_env, tmp_path):
    """In fast mode on a server (CI), is no dataset needed?"""
    clean_env.setenv("SEGKIT_FAST", "1")
    clean_env.setenv("SEGKIT_DATA", str(tmp_path / "data"))
    env = environment.setup_notebook("patches", quiet=True)
    assert env.kind == "server" and all(status.startswith("skipped") for status in env.datasets.values())


def test_manual_dataset_instructions(clean_env, tmp_path):
    """Does a dataset that needs a registration (Vaihingen) get instructions instead of a download attempt?"""
    status = environment.prepare_dataset("vaihingen", tmp_path)
    assert (
        status.startswith("missing")
        and "registration" in status
        and str(tmp_path / "downloads" / "vaihingen") in status
    )


def test_colab_detected_by_importability(clean_env, tmp_path):
    """Is Colab recognised when google.colab is importable but not yet imported?"""
    package = tmp_path / "site" / "google" / "colab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        clean_env.delitem(sys.modules, name)
    clean_env.syspath_prepend(str(tmp_path / "site"))
    try:
        assert environment.in_colab()
    finally:  # detection may import the fake package: never let it leak into later tests
        for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
            del sys.modules[name]


def test_existing_editable_install_is_recognised(monkeypatch):
    """Is a kit already pip-installed (editable) from the same Drive folder, even one with spaces, left alone?"""
    folder = "/content/drive/MyDrive/Colab Notebooks/segkit"
    record = json.dumps(
        {"url": "file:///content/drive/MyDrive/Colab%20Notebooks/segkit", "dir_info": {"editable": True}}
    )
    monkeypatch.setattr(
        environment.importlib.metadata,
        "distribution",
        lambda name: types.SimpleNamespace(read_text=lambda filename: record),
    )
    assert environment._installed_from() == Path(folder)
    ran = []
    assert environment.install_kit(Path(folder), runner=lambda *a, **k: ran.append(a)) is False and ran == []


def test_manual_dataset_is_unpacked_from_archives_put_there(clean_env, tmp_path, monkeypatch):
    """Are archives put by hand into <data>/downloads/vaihingen unpacked, and a broken one reported, not raised?"""
    calls = []
    preparer = types.ModuleType("fake_archives")
    preparer.prepare = lambda root, archives, progress=True: calls.append((root, archives))
    monkeypatch.setitem(sys.modules, "fake_archives", preparer)
    monkeypatch.setitem(
        environment.DATASETS,
        "vaihingen",
        environment.DatasetSetup("vaihingen", None, manual="get it into {root}", from_archives="fake_archives:prepare"),
    )
    archives = tmp_path / "downloads" / "vaihingen"
    archives.mkdir(parents=True)
    (archives / "ISPRS_semantic_labeling_Vaihingen.zip").write_bytes(b"")
    assert environment.prepare_dataset("vaihingen", tmp_path, progress=False) == "prepared"
    assert calls == [(tmp_path, archives)]

    def broken(root, archives, progress=True):
        raise FileNotFoundError("no top/ tiles in the zip")

    preparer.prepare = broken
    status = environment.prepare_dataset("vaihingen", tmp_path, progress=False)
    assert status.startswith("missing: could not prepare it") and "no top/ tiles" in status and "--archives" in status
