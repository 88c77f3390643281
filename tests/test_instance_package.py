"""starter.instance as a package: every public name still importable from it, and the modules that data
preparation needs loading neither torch nor matplotlib (checked in a fresh interpreter)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import starter.instance
from starter.instance import rle_encode

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "starter" / "instance"
HEAVY = ("torch", "matplotlib")


def heavy_modules_after(modules: list[str]) -> list[str]:
    """The HEAVY packages a fresh interpreter has loaded after importing `modules`."""
    code = "import sys\n" + "".join(f"import {name}\n" for name in modules)
    code += f"print(' '.join(sorted({{n.split('.')[0] for n in sys.modules}} & {set(HEAVY)!r})))"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def public_names(module: Path) -> set[str]:
    """Top-level functions, classes and assignments of a module whose names do not start with "_"."""
    names = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    return {name for name in names if not name.startswith("_")}


def test_data_preparation_imports_neither_torch_nor_matplotlib():
    """Does importing every data script, the synthetic set's (starter.synthetic) included, leave torch and
    matplotlib unloaded?"""
    scripts = sorted(p.stem for p in (REPO_ROOT / "data_scripts").glob("*.py") if p.stem != "__init__")
    assert {"cmp_facade", "synthetic"} <= set(scripts)
    assert heavy_modules_after([f"data_scripts.{name}" for name in scripts]) == []


def test_instance_annotations_import_neither_torch_nor_matplotlib():
    """Do starter.instance, its annotations and its RLE codec load without torch and matplotlib, while a
    name of a torch module (CMPFacadeInstances) still loads torch on first use?"""
    light = ["starter.instance", "starter.instance.annotations", "starter.instance.rle"]
    assert heavy_modules_after(light) == []
    assert heavy_modules_after([*light, "starter.instance.dataset"]) == ["torch"]


def test_every_public_name_is_importable_from_the_package():
    """Is every public name of every starter.instance module listed in the package's __all__, and does
    each one resolve to that module's own object?"""
    exported = set(starter.instance.__all__)
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem == "__init__":
            continue
        module = __import__(f"starter.instance.{path.stem}", fromlist=["_"])
        names = public_names(path)
        assert names <= exported, f"{path.stem}: {sorted(names - exported)} not re-exported"
        for name in names:
            assert getattr(starter.instance, name) is getattr(module, name), name


def test_rle_encode_takes_a_tensor_without_importing_torch():
    """Does rle_encode (its module imports no torch) encode a tensor, one that requires grad included,
    exactly as it encodes the same NumPy mask?"""
    mask = np.zeros((5, 4), dtype=np.uint8)
    mask[1:3, 2:4] = 1
    as_tensor = torch.from_numpy(mask).float().requires_grad_()
    assert rle_encode(as_tensor) == rle_encode(mask) == rle_encode(mask.astype(bool))
    assert rle_encode(as_tensor) != rle_encode(np.zeros_like(mask))


def test_the_grade_fingerprint_reads_every_instance_module():
    """Does the fingerprint that decides whether a cached grade is reused cover every module of the
    starter.instance package (a grading worker may import any of them)?"""
    from grader.run.store import grade_inputs

    files = {path.relative_to(REPO_ROOT).as_posix() for path in grade_inputs("instance", REPO_ROOT)}
    modules = {path.relative_to(REPO_ROOT).as_posix() for path in PACKAGE.glob("*.py")}
    assert len(modules) > 1 and modules <= files
