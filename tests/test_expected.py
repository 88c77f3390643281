"""Expected ranges printed after each experiment (starter.expected) and the dataset switch (starter.data)."""

from __future__ import annotations

import json

import pytest

from starter.constants import CMP_CLASSES, CMP_PALETTE
from starter.data import chosen_dataset, dataset_spec
from starter.expected import ExpectedRange, report_against_expected, verdict

RANGE = ExpectedRange(0.20, 0.30, "test")


@pytest.mark.parametrize(
    ("miou", "kind"),
    [(0.25, "inside"), (0.20, "inside"), (0.17, "near"), (0.33, "near"), (0.10, "far below"), (0.40, "far above")],
)
def test_verdict_separates_runs_that_vary_from_runs_that_are_broken(miou, kind):
    """Is a run just outside the range told apart from one far outside it?"""
    assert verdict(miou, RANGE) == kind


def test_nan_miou_is_far_below():
    assert verdict(float("nan"), RANGE) == "far below"


def test_a_far_run_warns_with_the_usual_causes(capsys):
    """Does a broken run get a warning that names what usually causes it?"""
    message = report_against_expected("U-Net", 0.02, RANGE)
    assert message.startswith("WARNING U-Net") and "learning rate" in message and "aligned" in message
    assert "WARNING" in capsys.readouterr().out
    assert "WARNING" not in report_against_expected("U-Net", 0.26, RANGE)
    unmeasured = report_against_expected("U-Net", 0.26, None)
    assert "no expected range" in unmeasured and "What to expect" in unmeasured and "WARNING" not in unmeasured


def test_expected_range_rejects_nonsense():
    with pytest.raises(ValueError):
        ExpectedRange(0.5, 0.4, "x")


def test_dataset_switch_uses_the_datasets_own_classes(tmp_path, monkeypatch):
    """Can a notebook be pointed at another prepared dataset, with its own class names and palette?"""
    monkeypatch.delenv("SEGKIT_DATASET", raising=False)
    assert chosen_dataset("stanford_background") == "stanford_background"
    monkeypatch.setenv("SEGKIT_DATASET", "cmp_facade")
    assert chosen_dataset("stanford_background") == "cmp_facade"

    (tmp_path / "cmp_facade").mkdir()
    (tmp_path / "cmp_facade" / "meta.json").write_text(json.dumps({"classes": list(CMP_CLASSES)}))
    spec = dataset_spec("cmp_facade", tmp_path)
    assert spec.classes == CMP_CLASSES and spec.palette == CMP_PALETTE and spec.n_class == 12

    (tmp_path / "roofs").mkdir()
    (tmp_path / "roofs" / "meta.json").write_text(json.dumps({"classes": ["ground", "roof"]}))
    spec = dataset_spec("roofs", tmp_path)
    assert spec.classes == ("ground", "roof") and len(spec.palette) == 2 and spec.palette[0] != spec.palette[1]

    with pytest.raises(FileNotFoundError, match="not prepared"):
        dataset_spec("missing", tmp_path)
