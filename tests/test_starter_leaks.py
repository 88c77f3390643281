"""Does anything students receive besides their own cells hold the answer to a graded unit?

Students get the `starter` package (with every assignment's public checks, copied to
`starter/checks/<a>.py` by `segkit release`) and every notebook, not only the one they work on.
So a graded unit must not be implemented:

* in `starter/` or a public check: no function, class or module-level name equal to a graded
  one (name scan), no random joint image/mask transform, and `evaluate` must compute its
  metrics with the functions it is given (behavioural probes);
* in a cell of any solution notebook other than the graded cells, which `segkit generate`
  replaces by stubs: a teaching cell of notebook X must not define a graded name of notebook Y.

Graded names are discovered, not listed: the functions and classes each graded cell defines, and
the names the hidden checks look up in the student's namespace (`ns["..."]`).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest
import torch

import starter
from grader.assignments import REPO_ROOT, assignment_names, load_assignment
from starter.common import cell_source, nbgrader_meta, read_notebook

ASSIGNMENTS = assignment_names()
# Candidate constructor arguments for the behavioural probe of joint transforms: a crop size,
# an int size, a probability of one, no argument.
CONSTRUCTOR_ARGS = [((6, 8),), (6,), (6, 8), (1.0,), ()]
PROBE_SEEDS = range(8)


# --- what is graded ------------------------------------------------------------------------


def defined_names(tree: ast.AST) -> set[str]:
    """Every function and class a piece of code defines (at any depth), and its module-level names."""
    names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def graded_names() -> dict[str, list[str]]:
    """{name: ["assignment/grade_id", ...]} of every function or class a graded unit asks for."""
    found: dict[str, list[str]] = {}
    for name in ASSIGNMENTS:
        spec = load_assignment(name)
        for unit in spec.auto_units:
            for node in ast.parse(unit.source).body:
                if isinstance(node, ast.FunctionDef | ast.ClassDef):
                    found.setdefault(node.name, []).append(f"{name}/{unit.grade_id}")
        for looked_up in re.findall(r"""ns\[["'](\w+)["']\]""", spec.checks_path.read_text(encoding="utf-8")):
            found.setdefault(looked_up, [f"{name}/hidden checks"])
    return found


def _key(name: str) -> str:
    return name.lstrip("_").lower()


def name_leaks(sources: dict[str, str], graded: dict[str, list[str]]) -> list[str]:
    """'where: name (units)' for every graded name that `sources` ({where: code}) define."""
    wanted = {_key(name): ", ".join(units) for name, units in graded.items()}
    leaks = []
    for where, source in sources.items():
        for name in sorted(defined_names(ast.parse(source))):
            if _key(name) in wanted:
                leaks.append(f"{where}: {name} ({wanted[_key(name)]})")
    return leaks


# --- what students get besides their graded cells --------------------------------------------


def starter_sources(root: Path = REPO_ROOT) -> dict[str, str]:
    """The starter package and the public checks that ship in it, {relative path: source}."""
    paths = sorted((root / "starter").rglob("*.py")) + sorted((root / "assignments").glob("*/public_checks.py"))
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in paths}


def _without_magics(source: str) -> str:
    # IPython lines (`!python ...`, `%env ...`) are not Python; comment them out to parse the rest.
    return "\n".join("# " + line if line.lstrip().startswith(("!", "%")) else line for line in source.splitlines())


def teaching_sources(root: Path = REPO_ROOT) -> dict[str, str]:
    """Every code cell of every solution notebook that is not a graded cell, {notebook [index]: source}."""
    sources = {}
    for name in ASSIGNMENTS:
        notebook = read_notebook(root / "solutions" / name / f"{name}.ipynb")
        for index, cell in enumerate(notebook["cells"]):
            if cell.get("cell_type") == "code" and not nbgrader_meta(cell).get("solution"):
                sources[f"solutions/{name}/{name}.ipynb [cell {index}]"] = _without_magics(cell_source(cell))
    return sources


def starter_modules():
    modules = [starter]
    for info in pkgutil.walk_packages(starter.__path__, prefix="starter."):
        modules.append(importlib.import_module(info.name))
    return modules


# --- name scans ----------------------------------------------------------------------------------


def test_graded_names_are_discovered():
    """Are the graded units found at all (else every scan below passes vacuously)?"""
    graded = graded_names()
    for expected in ("random_crop_flip", "confusion_matrix", "iou_per_class", "mean_iou", "class_weights"):
        assert expected in graded
    assert {unit.split("/")[0] for units in graded.values() for unit in units} == set(ASSIGNMENTS)


def test_starter_defines_no_graded_name():
    """Does starter (or a public check shipped with it) define a function, class or name a graded unit asks for?"""
    assert name_leaks(starter_sources(), graded_names()) == []


def test_starter_modules_expose_no_graded_name():
    """At run time, does any starter module hold an attribute named like a graded function or class?"""
    wanted = {_key(name): ", ".join(units) for name, units in graded_names().items()}
    exposed = [
        f"{module.__name__}.{attribute} ({wanted[_key(attribute)]})"
        for module in starter_modules()
        for attribute in vars(module)
        if _key(attribute) in wanted and not inspect.ismodule(getattr(module, attribute))
    ]
    assert exposed == []


def test_no_teaching_cell_defines_a_graded_name():
    """Does a non-graded cell of any solution notebook define what a graded unit (of any notebook) asks for?"""
    assert name_leaks(teaching_sources(), graded_names()) == []


def test_the_name_scans_find_planted_leaks(tmp_path):
    """Would the scans above catch a graded name in starter, in a public check and in a teaching cell?"""
    (tmp_path / "starter").mkdir()
    (tmp_path / "assignments" / "demo").mkdir(parents=True)
    (tmp_path / "starter" / "helpers.py").write_text("def _Mean_IoU(conf):\n    return 0.0\n", encoding="utf-8")
    (tmp_path / "assignments" / "demo" / "public_checks.py").write_text(
        "from torchvision.transforms import RandomCrop as random_crop_flip\n", encoding="utf-8"
    )
    leaks = name_leaks(starter_sources(tmp_path), graded_names())
    assert any("helpers.py: _Mean_IoU" in leak for leak in leaks)
    assert any("public_checks.py: random_crop_flip" in leak for leak in leaks)
    cell = _without_magics("!pip list\nclass Helper:\n    def class_weights(self, masks):\n        pass\n")
    leaks = name_leaks({"cell": cell}, graded_names())
    assert len(leaks) == 1 and leaks[0].startswith("cell: class_weights (") and "unet/unet_weights" in leaks[0]


# --- behavioural probes -------------------------------------------------------------------------


def coordinate_pair(height=10, width=14):
    """Image whose channels hold (row, column, 0.5); mask holding row * width + column."""
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    cols = torch.arange(width).view(1, -1).expand(height, width)
    image = torch.stack([rows.float(), cols.float(), torch.full((height, width), 0.5)])
    return image, (rows * width + cols).long().contiguous()


def _takes_image_and_mask(function) -> bool:
    try:
        parameters = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2


def joint_transforms(modules):
    """(name, factory) of every class with __call__(image, mask) and every function (image, mask, ...)."""
    found = {}
    for module in modules:
        for attribute, value in vars(module).items():
            if getattr(value, "__module__", None) != module.__name__ or attribute.startswith("_"):
                continue
            if inspect.isclass(value) and "__call__" in vars(value) and _takes_image_and_mask(value.__call__):
                found[f"{module.__name__}.{attribute}"] = value
            elif inspect.isfunction(value):
                names = list(inspect.signature(value).parameters)[:2]
                if len(names) == 2 and "image" in names[0] and "mask" in names[1]:
                    found[f"{module.__name__}.{attribute}"] = value
    return found


def _outputs(transform, extra_args):
    """The transform's output for each seed, or None when it does not accept a tensor pair."""
    outputs = []
    for seed in PROBE_SEEDS:
        torch.manual_seed(seed)
        image, mask = coordinate_pair()
        try:
            out = transform(image, mask, *extra_args)
        except Exception:
            return None
        if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
            return None
        outputs.append(out)
    return outputs


def random_joint_transforms(candidates) -> tuple[list[str], int]:
    """Which candidates change a fixed image/mask pair randomly (a joint random crop or flip), and how many ran."""
    random_ones, probed = [], 0
    for name, factory in candidates.items():
        attempts = (
            [(factory(*args), ()) for args in CONSTRUCTOR_ARGS if _constructs(factory, args)]
            if inspect.isclass(factory)
            else [(factory, args) for args in CONSTRUCTOR_ARGS]
        )
        for transform, extra_args in attempts:
            outputs = _outputs(transform, extra_args)
            if outputs is None:
                continue
            probed += 1
            first_image, first_mask = outputs[0]
            if any(
                image.shape != first_image.shape
                or not torch.equal(image, first_image)
                or not torch.equal(mask, first_mask)
                for image, mask in outputs[1:]
            ):
                random_ones.append(name)
                break
    return random_ones, probed


def _constructs(factory, args) -> bool:
    try:
        factory(*args)
    except Exception:
        return False
    return True


def test_no_starter_callable_crops_or_flips_image_and_mask_at_random():
    """Does any starter class or function transform an image/mask pair randomly (the joint augmentation unit)?"""
    candidates = joint_transforms(starter_modules())
    random_ones, probed = random_joint_transforms(candidates)
    assert probed >= 3, f"the probe ran on too few joint transforms to mean anything: {sorted(candidates)}"
    assert random_ones == []


def test_train_preset_without_augment_is_deterministic():
    """Does the training preset, given no augment, give the same pair whatever the seed (no built-in crop/flip)?"""
    from PIL import Image

    from starter.transforms import train_preset

    image = Image.fromarray((torch.arange(30 * 20 * 3) % 251).reshape(30, 20, 3).to(torch.uint8).numpy())
    mask = Image.fromarray((torch.arange(30 * 20) % 7).reshape(30, 20).to(torch.uint8).numpy())
    outputs = []
    for seed in PROBE_SEEDS:
        torch.manual_seed(seed)
        outputs.append(train_preset(size=16)(image, mask))
    assert all(torch.equal(o[0], outputs[0][0]) and torch.equal(o[1], outputs[0][1]) for o in outputs[1:])


def test_the_random_transform_probe_finds_a_planted_crop_and_flip():
    """Would the probe catch a random joint crop (a class) and a random flip (a function)?"""

    class WindowCrop:
        def __init__(self, size):
            self.size = size

        def __call__(self, image, mask):
            h, w = self.size
            top = int(torch.randint(0, image.shape[-2] - h + 1, ()))
            left = int(torch.randint(0, image.shape[-1] - w + 1, ()))
            return image[:, top : top + h, left : left + w], mask[top : top + h, left : left + w]

    def maybe_mirror(image, mask, p=0.5):
        return (image.flip(-1), mask.flip(-1)) if torch.rand(()) < p else (image, mask)

    random_ones, probed = random_joint_transforms({"WindowCrop": WindowCrop, "maybe_mirror": maybe_mirror})
    assert probed >= 2 and random_ones == ["WindowCrop", "maybe_mirror"]


def test_evaluate_takes_its_metrics_from_the_functions_it_is_given():
    """Does starter.train.evaluate use the confusion and mIoU functions passed in (not its own)?"""
    from starter.train import evaluate

    n_class = 3
    model = torch.nn.Conv2d(3, n_class, 1)
    batches = [(torch.randn(2, 3, 4, 5), torch.randint(0, n_class, (2, 4, 5))) for _ in range(2)]
    planted = torch.arange(n_class * n_class).reshape(n_class, n_class)

    def confusion_fn(pred, target, classes):
        return planted

    seen = []

    def miou_fn(conf):
        seen.append(conf.clone())
        return 0.125

    result = evaluate(
        model, batches, "cpu", n_class=n_class, confusion_fn=confusion_fn, miou_fn=miou_fn, progress=False
    )
    assert result["miou"] == 0.125
    assert torch.equal(result["confusion"], 2 * planted)
    assert len(seen) == 1 and torch.equal(seen[0], 2 * planted)


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_every_graded_unit_is_scanned(name):
    """Does the scan know at least one graded name for every graded unit of this assignment?"""
    graded_units = {unit for units in graded_names().values() for unit in units}
    expected = {f"{name}/{unit.grade_id}" for unit in load_assignment(name).auto_units}
    assert expected <= graded_units
