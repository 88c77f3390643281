"""Do the instance notebook's given helpers (starter/instance_notebook.py) keep the notebook's rules?

Each helper that has logic of its own is checked on tiny hand-made inputs: the student's functions are
stand-ins here, so that every test runs in well under a second.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from starter import instance_notebook as kit
from starter.instance.detection import _cosine_with_warmup
from starter.runs import ExperimentResult


def _masks(*areas: int, size: int = 6) -> torch.Tensor:
    """Masks (K, size, size), the k-th holding its first areas[k] pixels in row-major order."""
    masks = torch.zeros(len(areas), size * size, dtype=torch.bool)
    for k, area in enumerate(areas):
        masks[k, :area] = True
    return masks.reshape(len(areas), size, size)


def test_scored_ranks_by_area_without_probabilities_and_by_mean_probability_with_them():
    """Does `scored` rank by image share without a probability map, and by the mean probability inside each mask?"""
    masks = _masks(4, 9)
    by_area = kit.scored(masks)
    assert by_area["scores"].tolist() == pytest.approx([4 / 36, 9 / 36])
    assert by_area["labels"].tolist() == [1, 1] and by_area["labels"].dtype == torch.int64
    probability = torch.zeros(6, 6)
    probability.view(-1)[:4] = 1.0  # the first mask lies wholly inside, the second one only by 4 of 9 pixels
    by_probability = kit.scored(masks, probability)
    assert by_probability["scores"].tolist() == pytest.approx([1.0, 4 / 9])
    empty = kit.scored(torch.zeros(0, 6, 6, dtype=torch.bool))
    assert empty["scores"].shape == (0,) and empty["labels"].shape == (0,)


def test_classical_instances_calls_the_given_functions_and_drops_small_watershed_regions():
    """Does ClassicalInstances pass min_area to the split function, min_distance to the watershed function, and
    drop the watershed regions under min_area (keeping those of exactly min_area)?"""
    calls = []

    def split(window_map, min_area):
        calls.append(("split", min_area))
        return _masks(5)

    def watershed(window_map, min_distance):
        calls.append(("watershed", min_distance))
        return _masks(2, 3, 8)

    found = kit.ClassicalInstances(split, watershed, min_area=3, min_distance=7)(torch.ones(6, 6, dtype=torch.bool))
    assert sorted(calls) == [("split", 3), ("watershed", 7)]
    assert found["components"].shape == (1, 6, 6)
    assert found["watershed"].flatten(1).sum(1).tolist() == [3, 8]


def test_deep_instances_passes_levels_mask_and_cut_and_drops_small_regions():
    """Does DeepInstances call energy_instances(levels, window_map, cut_level) and drop regions under min_area?"""
    seen = {}

    def energy_instances(levels, object_mask, cut_level):
        seen.update(levels=levels, object_mask=object_mask, cut_level=cut_level)
        return _masks(1, 4)

    window_map, levels = torch.ones(6, 6, dtype=torch.bool), torch.full((6, 6), 2)
    kept = kit.DeepInstances(energy_instances, min_area=2)(window_map, levels, 3)
    assert seen["levels"] is levels and seen["object_mask"] is window_map and seen["cut_level"] == 3
    assert kept.flatten(1).sum(1).tolist() == [4]


def _result(name: str, **extra) -> ExperimentResult:
    return ExperimentResult(
        name=name, data="d", image_size="s", epochs_run=0, epochs_planned=0, profile="fast", device="cpu",
        seconds_per_epoch=0.0, pixel_acc=math.nan, miou=math.nan, extra=extra,
    )  # fmt: skip


def test_print_result_shows_cocos_map_only_when_asked(capsys):
    """Does print_result print one line with COCO's mAP when coco_map is True, and without it otherwise?"""
    result = _result("m", AP50=0.5, AP50_coco=0.25, mAP=0.125, mAP_coco=0.0625, count_MAE=1.25)
    kit.print_result(result)
    kit.print_result(result, coco_map=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "m: AP50 0.500 (COCO 0.250), mAP 0.125 (COCO 0.062), windows miscounted by 1.2 per facade",
        "m: AP50 0.500 (COCO 0.250), mAP 0.125, windows miscounted by 1.2 per facade",
    ]


def test_window_counts_and_curves_take_only_the_results_that_saved_them():
    """Do window_counts and window_pr_curves read the saved counts and curves, leaving out results without them?"""
    results = {
        "a": _result("a", **{"count 0": 3.0, "count 1": 5.0, "pr precision window": [1.0, 0.5, 0.0]}),
        "semantic": _result("semantic"),
    }
    assert kit.window_counts(results, 2) == {"a": [3, 5]}
    curves = kit.window_pr_curves(results)
    assert list(curves) == ["a"]
    recall, precision = curves["a"]
    assert recall.tolist() == pytest.approx([0.0, 0.5, 1.0]) and precision == [1.0, 0.5, 0.0]


class _Facades:
    """A test split of two facades holding 2 and 1 window instances (and a door, label 2, in the first)."""

    names = ["f0", "f1"]

    def __len__(self) -> int:
        return 2

    def instance_masks(self, index: int):
        if index == 0:
            return _masks(4, 9, 3), torch.tensor([1, 1, 2]), torch.zeros(3, 4)
        return _masks(6), torch.tensor([1]), torch.zeros(1, 4)


def _experiments(match_fn, ap_fn, profile: str = "fast") -> kit.InstanceExperiments:
    data = SimpleNamespace(test=_Facades(), dataset="toy", longest_side=6, classes=("window", "door"))
    return kit.InstanceExperiments(
        store=None, data=data, match_fn=match_fn, ap_fn=ap_fn, profile=profile, device=torch.device("cpu")
    )


def test_instance_result_uses_the_given_matching_and_ap_and_counts_windows():
    """Does instance_result take AP50 from the given match and AP functions, and the counting error from the
    counts against the true windows (2 and 1: errors 1 and 1, relative 1/2 and 1)?"""
    experiments = _experiments(match_fn=lambda p, s, g, t: torch.full((len(p),), -1), ap_fn=lambda tp, s, n: 0.25)
    assert experiments.true_counts == [2, 1]
    assert [t["masks"].shape[0] for t in experiments.test_targets] == [2, 1]
    predictions = [kit.scored(target["masks"]) for target in experiments.test_targets]
    result = experiments.instance_result("r", predictions, experiments.test_targets, counts=[3, 0])
    assert result.extra["AP50"] == pytest.approx(0.25) and result.extra["mAP"] == pytest.approx(0.25)
    assert result.extra["AP50_coco"] == pytest.approx(1.0)  # the predictions are the ground truth itself
    assert result.extra["count_MAE"] == pytest.approx(1.0) and result.extra["count_rel"] == pytest.approx(0.75)
    assert result.extra["count 0"] == 3 and result.extra["count 1"] == 0
    assert result.data == "toy" and result.image_size == "longest side 6" and result.profile == "fast"


def test_the_mask_rcnn_schedule_warms_up_then_decays_to_zero():
    """Does the detection schedule rise linearly over the warm-up, peak near 1 and reach 0 at the last step?"""
    factor = _cosine_with_warmup(steps=100, warmup=10)
    assert factor(0) == pytest.approx(0.1 * 0.5 * (1 + math.cos(0)))
    assert factor(4) < factor(9) <= 1.0
    assert factor(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 9 / 100)))
    assert factor(100) == pytest.approx(0.0, abs=1e-12) and factor(150) == pytest.approx(0.0, abs=1e-12)


def test_mask_rcnn_is_skipped_with_a_line_in_the_cpu_profile_without_a_gpu(capsys):
    """Does the cpu profile on a CPU skip Mask R-CNN (None, and a line saying why) without building or training it?"""
    experiments = _experiments(match_fn=None, ap_fn=None, profile="cpu")
    assert experiments.mask_rcnn(train_data=None, epochs=1, batch_size=1, lr=0.1) is None
    assert capsys.readouterr().out.startswith("Mask R-CNN skipped: no GPU")
