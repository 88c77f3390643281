"""docs/results.md (segkit results): rendered from a runs folder, without running any notebook."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

from segkit import results as card
from starter.constants import CMP_CLASSES
from starter.runs import ExperimentResult, RunStore

matplotlib.use("Agg")


def _result(name: str, miou: float, *, trained: bool = True) -> ExperimentResult:
    n = len(CMP_CLASSES)
    history = {"train_loss": [2.0, 1.5], "val_loss": [2.1, 1.7], "val_miou": [0.1, miou]} if trained else {}
    return ExperimentResult(
        name=name,
        data="cmp_facade",
        image_size="96x96",
        epochs_run=2 if trained else 0,
        epochs_planned=8 if trained else 0,
        profile="cpu",
        device="cpu",
        seconds_per_epoch=42.0 if trained else float("nan"),
        pixel_acc=0.5,
        miou=miou,
        per_class_iou={c: (float("nan") if i == 3 else 0.2) for i, c in enumerate(CMP_CLASSES)},
        confusion=[[5 if i == j else 1 for j in range(n)] for i in range(n)],
        history=history,
        extra={"mAP": 0.3, "AP window": 0.4},
    )


@pytest.fixture
def results_tree(tmp_path, monkeypatch):
    monkeypatch.setattr(card, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(card, "DOCS_FILE", tmp_path / "docs" / "results.md")
    monkeypatch.setattr(card, "FIGURES_DIR", tmp_path / "docs" / "results")
    (tmp_path / "docs").mkdir()
    data = tmp_path / "build" / "data" / "cmp_facade"
    data.mkdir(parents=True)
    (data / "meta.json").write_text(json.dumps({"classes": list(CMP_CLASSES)}))
    runs = tmp_path / "build" / "runs"
    store = RunStore(runs / "unet")
    store.save_result("per-pixel prior", _result("per-pixel prior", 0.05, trained=False))
    store.save_result("U-Net", _result("U-Net", 0.21))
    return runs


def test_results_card_lists_every_experiment_with_its_figures(results_tree):
    """Does the card show each finished experiment, the rows that need ImageNet weights, and its figures?"""
    text = card.render_report(results_tree, {"unet": 600.0}, "test machine")
    assert "| U-Net | cmp_facade | 96x96 | 2/8 | 42 | 0.500 | 0.210 |" in text
    assert "| per-pixel prior | cmp_facade | 96x96 | 0 |" in text
    assert "| ResNet-UNet ImageNet | needs ImageNet weights: not run here |" in text
    assert "this notebook: 10.0 min" in text
    assert "| mAP |" in text and "AP window" not in text  # per-class AP stays in the runs folder
    figures = card.FIGURES_DIR / "unet"
    assert (figures / "curves.png").is_file() and (figures / "U-Net-iou.png").is_file()
    assert "](results/unet/curves.png)" in text
    # The assignment whose notebook cannot run offline says why.
    assert "**cam**: needs ImageNet-pretrained" in text


def test_results_card_without_runs_says_how_to_make_them(results_tree):
    import shutil

    shutil.rmtree(results_tree / "unet")
    text = card.render_report(results_tree, {}, "test machine")
    assert "No finished experiment in the runs folder" in text


def test_a_notebook_without_runs_here_keeps_its_section_from_the_previous_page(results_tree):
    """Does rebuilding the page on a machine with only one notebook's runs keep the other notebooks' sections?"""
    previous = card.render_report(results_tree, {"unet": 600.0}, "first machine")
    fcn_heading = next(line for line in previous.splitlines() if line.startswith("## fcn:"))
    previous = previous.replace(fcn_heading, fcn_heading + "\n\n| FCN-32s scratch | measured elsewhere |")
    import shutil

    shutil.rmtree(results_tree / "unet")
    text = card.render_report(results_tree, {}, "second machine", previous)
    assert "| U-Net | cmp_facade | 96x96 | 2/8 | 42 | 0.500 | 0.210 |" in text  # unet: kept, not lost
    assert "| FCN-32s scratch | measured elsewhere |" in text
    assert text.count("Kept from the previous page") >= 2
    assert "Machine: second machine" in text
    # Without a previous page, a notebook without runs still says how to make them.
    assert "No finished experiment in the runs folder" in card.render_report(results_tree, {}, "second machine")


def _full_result(name: str, miou: float) -> ExperimentResult:
    result = _result(name, miou)
    return ExperimentResult(**{**result.__dict__, "profile": "full", "image_size": "256x320", "epochs_planned": 40})


def test_the_full_section_shows_published_numbers_with_their_setting_until_a_run_replaces_them(results_tree):
    """Without a `full` run, does each experiment read "unmeasured" beside the course's published number and setting?"""
    text = card.render_report(results_tree, {}, "test machine")
    full = card.page_sections(text)[card.FULL_HEADING]
    assert "| U-Net | " + card.NO_FULL_RUN + " | 0.500 (original course: above this" in full
    assert "| FCN-8s VGG16 | " + card.NO_FULL_RUN + " | 0.482 (original course: test mIoU on CMP Facade" in full
    assert "ResNet-UNet ImageNet | " + card.NO_FULL_RUN + " | 0.600 (original course" in full
    assert "50 epochs of SGD at lr 1e-3" in full
    # The notebook's own dataset and the other datasets say why they are unmeasured.
    assert "- On stanford_background: unmeasured in every profile: the results machine is offline" in full
    assert "- On kitti: unmeasured" in full and "- On landcover: unmeasured" in full
    assert "### patches (the course's data: vaihingen)" in full and "Unmeasured: needs ISPRS Vaihingen" in full


def test_profile_full_runs_the_notebooks_in_their_own_runs_folder_and_fills_the_full_section(results_tree, monkeypatch):
    """Does `segkit results --profile full` run in the full profile, apart from the cpu runs, and fill the full rows?"""
    executed = []

    def fake_notebook(source, executed_copy, env, workdir):
        # A tiny fake run: the notebook would train; here it only leaves one finished result in its runs folder.
        assignment = source.stem
        executed.append((assignment, env["SEGKIT_PROFILE"], env["SEGKIT_RUNS"]))
        RunStore(Path(env["SEGKIT_RUNS"]) / assignment).save_result("U-Net", _full_result("U-Net", 0.55))
        return 90.0

    monkeypatch.setattr(card, "prepare_data", lambda shared, root: root)
    monkeypatch.setattr(card, "execute_notebook", fake_notebook)
    monkeypatch.setattr(card, "_environment_line", lambda: "a GPU machine")
    monkeypatch.setattr(card, "REPO_ROOT", results_tree.parent.parent)  # the page and figures land in tmp
    cpu_before = RunStore(results_tree / "unet").results()
    assert card.main(["--profile", "full", "--only", "unet"]) == 0
    assert executed == [("unet", "full", str(results_tree.parent / "runs-full"))]
    assert RunStore(results_tree / "unet").results().keys() == cpu_before.keys()  # the cpu runs untouched
    text = card.DOCS_FILE.read_text()
    full = card.page_sections(text)[card.FULL_HEADING]
    assert "Measured by `bin/segkit results --profile full` in 2 min on a GPU machine." in full
    assert "| U-Net | measured: mIoU 0.550, pixel accuracy 0.500, 2/40 epochs, 42 s per epoch (256x320) |" in full
    assert "| per-pixel prior | " + card.NO_FULL_RUN in full  # a cpu result is never shown as a full one
    # The cpu section still shows the cpu run (0.21).
    assert "| U-Net | cmp_facade | 96x96 | 2/8 | 42 | 0.500 | 0.210 |" in text
    # A later rebuild on a machine without the full runs keeps the measured subsection.
    import shutil

    shutil.rmtree(results_tree.parent / "runs-full")
    again = card.render_report(results_tree, {}, "cpu machine", text)
    assert "measured: mIoU 0.550" in card.page_sections(again)[card.FULL_HEADING]
