"""The given parts of the instance notebook: data set-up, the experiments' bookkeeping, the results' tables.

Nothing here builds targets, splits, matches or scores instances by itself: where a step is a graded unit
(``instance_targets``, ``split_instances``, ``watershed_instances``, ``match_instances``, ``average_precision``,
``energy_targets``, ``watershed_energy_loss``, ``energy_instances``) the helper takes the student's function as
an argument and calls it::

    experiments = InstanceExperiments.open("instance", data, match_fn=match_instances, ap_fn=average_precision,
                                           profile=PROFILE, device=device)
    experiments.classical("true window maps", window_maps, ClassicalInstances(split_instances, ...))

Every experiment goes through ``starter.runs.run_or_load``: a finished one is loaded from the runs folder, and
one that meets a unit still left as its stub prints one line and gives None (so "Run All" carries on); the
figures that need a student's function (``show_split``) are skipped the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from starter.common import data_root
from starter.constants import CMP_CLASSES
from starter.instance import CMPFacadeInstances, coco_mask_map, evaluate_instances, show_matches
from starter.instance.detection import collate_detection, predict_instances
from starter.runs import ExperimentResult, RunStore, run_or_load

__all__ = [
    "ClassicalInstances",
    "DeepCut",
    "DeepInstances",
    "InstanceData",
    "InstanceExperiments",
    "print_kept_instances",
    "print_level_shares",
    "print_result",
    "scored",
    "show_energy_cut",
    "show_facade_instances",
    "show_results_tables",
    "show_saved_matches",
    "show_split",
    "toy_cross_check",
    "window_counts",
    "window_pr_curves",
    "window_targets",
]

Prediction = dict[str, torch.Tensor]  # {"masks": bool (K, H, W), "scores": float (K,), "labels": int64 (K,)}
SplitFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]  # window map bool (H, W) -> {method: masks (K, H, W)}

# Fast mode: few proposals and regions (the box and mask heads dominate Mask R-CNN's cost on small images).
FAST_MASK_RCNN_OPTIONS = dict(
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=100,
    rpn_pre_nms_top_n_test=100,
    rpn_post_nms_top_n_test=30,
    box_batch_size_per_image=32,
)


# --- data -----------------------------------------------------------------------------------------


@dataclass
class InstanceData:
    """The prepared facade instances: the dataset's folder name, the image size, the three splits."""

    dataset: str
    longest_side: int
    train: CMPFacadeInstances
    val: CMPFacadeInstances
    test: CMPFacadeInstances

    @property
    def classes(self) -> tuple[str, ...]:
        """The instance classes: instance label k is classes[k - 1]."""
        return self.train.classes

    def split(
        self, split: str, transforms: Any = None, longest_side: int | None | str = "default"
    ) -> CMPFacadeInstances:
        """One split as (image, target) pairs; longest_side None keeps the images' own size."""
        size = self.longest_side if longest_side == "default" else longest_side
        return CMPFacadeInstances(split=split, transforms=transforms, dataset=self.dataset, longest_side=size)

    @classmethod
    def prepare(
        cls, targets_fn: Callable[..., dict], class_ids: Sequence[int], longest_side: int, *, fast: bool
    ) -> InstanceData:
        """Data in place (fast: 12 synthetic facades), instances written with the student's ``targets_fn``.

        Inputs:
            targets_fn: the student's instance_targets(objects, label_mask, classes); the annotations are
                derived again whenever it changes.
            class_ids: the label masks' class index of every instance class.
            longest_side: pixels of the longer image side the splits are resized to.
        Returns:
            the splits; prints how many facades each holds.
        """
        from starter.data import chosen_dataset
        from starter.instance import write_instance_annotations

        if fast:
            from data_scripts.synthetic_facades import write_synthetic_facades

            print(
                "Fast mode: 12 synthetic facades (official CMP layout, prepared by the kit's script) stand in for "
                "the real data; the numbers below are not meaningful."
            )
            dataset = "synthetic_facade"
            write_synthetic_facades(data_root(), n=12, size=(128, 96))
        else:
            dataset = chosen_dataset("cmp_facade")  # $SEGKIT_DATASET: another prepared dataset in the same layout
            if not (data_root() / dataset / "objects").is_dir():  # prepared before the rectangles were copied
                from data_scripts.cmp_facade import prepare_cmp_facade

                prepare_cmp_facade(data_root())  # adds the object rectangles; finished images are skipped
        write_instance_annotations(data_root() / dataset, targets_fn, list(class_ids), progress=not fast)
        splits = [
            CMPFacadeInstances(split=s, dataset=dataset, longest_side=longest_side) for s in ("train", "val", "test")
        ]
        data = cls(dataset, longest_side, *splits)
        print(
            f"{dataset}: {len(data.train)} train, {len(data.val)} val, {len(data.test)} test facades; "
            f"instance classes {data.classes}"
        )
        return data


def print_kept_instances(data: InstanceData, class_ids: Sequence[int], n_facades: int = 4) -> None:
    """Instances kept per class on the first training facades (at their own size), against their rectangles."""
    from starter.instance import parse_cmp_objects

    original = data.split("train", longest_side=None)
    for index in range(min(n_facades, len(original))):
        rectangles = sum(o["label"] in class_ids for o in parse_cmp_objects(original.objects_path(index)))
        _, labels, _ = original.instance_masks(index)
        counts = torch.bincount(labels, minlength=len(data.classes) + 1)[1:].tolist()
        print(f"{original.names[index]}: {dict(zip(data.classes, counts))} from {rectangles} rectangles")


def window_targets(dataset: CMPFacadeInstances, index: int) -> dict[str, torch.Tensor]:
    """The ground-truth window instances of one facade: {"masks": bool (N, H, W), "labels": int64 (N,) of ones}."""
    masks, labels, _ = dataset.instance_masks(index)
    windows = masks[labels == 1].bool()
    return {"masks": windows, "labels": torch.ones(len(windows), dtype=torch.int64)}


def scored(masks: torch.Tensor, window_probability: torch.Tensor | None = None) -> Prediction:
    """A prediction dict for masks bool (K, H, W): ranked by mean window probability (H, W) when given, else by
    area (share of the image)."""
    if window_probability is None:
        scores = masks.flatten(1).sum(1).float() / masks[0].numel() if len(masks) else torch.zeros(0)
    else:
        scores = (masks.float() * window_probability).flatten(1).sum(1) / masks.flatten(1).sum(1).clamp(min=1)
    return {"masks": masks, "scores": scores, "labels": torch.ones(len(masks), dtype=torch.int64)}


def show_facade_instances(dataset: CMPFacadeInstances, index: int, window_class: int):
    """One facade's semantic window map, its window instances and all its instances. Returns: the Figure."""
    from starter.instance import show_instances

    image, target = dataset[index]
    window_map = dataset.label_mask(index) == window_class
    panels = {
        "semantic window map": window_map[None],
        "window instances": target["masks"][target["labels"] == 1],
        "all instances": target["masks"],
    }
    return show_instances(image, panels)


def _show_windows(dataset: CMPFacadeInstances, index: int, panels: Mapping[str, torch.Tensor], *, title: str):
    """A facade's true window instances, then `panels` {title: masks (K, H, W)} beside them. Returns: the Figure."""
    from starter.instance import show_instances

    truth = window_targets(dataset, index)["masks"]
    return show_instances(dataset[index][0], {"ground truth": truth, **panels}, title=title)


def show_split(
    dataset: CMPFacadeInstances,
    index: int,
    split: SplitFn,
    *,
    window_map: torch.Tensor | None = None,
):
    """A facade's true windows beside their ``split`` (a ClassicalInstances) of its true window map, or of
    `window_map` bool (H, W) when given (shown too). Returns: the Figure; None (said in one line) while a unit
    it needs is still a stub."""
    from starter.notebook import unless_undone

    def draw():
        if window_map is None:
            found = split(dataset.label_mask(index) == CMP_CLASSES.index("window"))
            title = "windows of a test facade, split from the ground-truth window map"
            return _show_windows(dataset, index, found, title=title)
        panels = {"predicted window map": window_map[None], **split(window_map)}
        return _show_windows(dataset, index, panels, title="a test facade, from the predicted window map")

    what = "the split of a test facade" if window_map is None else "the split of a predicted map"
    return unless_undone(what, draw)


@dataclass
class DeepCut:
    """The deep watershed's cut level (chosen on the validation facades) and the two-head network's output on
    every test facade: (window probability float (H, W), energy level int64 (H, W))."""

    cut_level: int
    outputs: list[tuple[torch.Tensor, torch.Tensor]]


def show_energy_cut(dataset: CMPFacadeInstances, index: int, cut: DeepCut | None, instances_fn: Callable):
    """A test facade's energy cut: the seeds (window pixels at a level >= the cut) and the instances grown from
    them by `instances_fn` (a DeepInstances). Returns: the Figure, or None when there is no cut (not trained)."""
    if cut is None:
        return None
    window_probability, levels = cut.outputs[index]
    window_map = window_probability > 0.5
    panels = {
        f"energy >= {cut.cut_level} (seeds)": ((levels >= cut.cut_level) & window_map)[None],
        "deep watershed": instances_fn(window_map, levels, cut.cut_level),
    }
    title = "a test facade: the predicted energy cut, and the instances grown from it"
    return _show_windows(dataset, index, panels, title=title)


# --- the student's splitting functions, with the notebook's settings ---------------------------------


@dataclass
class ClassicalInstances:
    """Components and watershed regions of one window map, with the student's functions.

    ``ClassicalInstances(split_instances, watershed_instances, min_area, min_distance)(window_map)`` ->
    {"components": bool (K, H, W), "watershed": bool (L, H, W)}; watershed regions under min_area dropped.
    """

    split_fn: Callable[..., torch.Tensor]
    watershed_fn: Callable[..., torch.Tensor]
    min_area: int
    min_distance: int

    def __call__(self, window_map: torch.Tensor) -> dict[str, torch.Tensor]:
        watershed_masks = self.watershed_fn(window_map, self.min_distance)
        keep = watershed_masks.flatten(1).sum(1) >= self.min_area
        return {"components": self.split_fn(window_map, self.min_area), "watershed": watershed_masks[keep]}


@dataclass
class DeepInstances:
    """The student's energy_instances on one facade, regions under min_area dropped.

    ``DeepInstances(energy_instances, min_area)(window_map bool (H, W), levels int64 (H, W), cut_level)`` ->
    bool (K, H, W).
    """

    energy_instances_fn: Callable[..., torch.Tensor]
    min_area: int

    def __call__(self, window_map: torch.Tensor, levels: torch.Tensor, cut_level: int) -> torch.Tensor:
        masks = self.energy_instances_fn(levels, window_map, cut_level)
        return masks[masks.flatten(1).sum(1) >= self.min_area]


# --- printing ---------------------------------------------------------------------------------------


def print_result(result: ExperimentResult, *, coco_map: bool = True) -> None:
    """One line: AP50 (and COCO's), mAP (and COCO's when coco_map), the counting error."""
    extra = result.extra
    coco = f" (COCO {extra['mAP_coco']:.3f})" if coco_map else ""
    print(
        f"{result.name}: AP50 {extra['AP50']:.3f} (COCO {extra['AP50_coco']:.3f}), mAP {extra['mAP']:.3f}{coco}, "
        f"windows miscounted by {extra['count_MAE']:.1f} per facade"
    )


def print_level_shares(energy_data: Any, n_levels: int) -> None:
    """The share of the window pixels at every energy level of a WindowEnergyData (what the weights even out)."""
    from starter.deep_watershed import level_histogram

    samples = energy_data.samples
    share = level_histogram([s.levels for s in samples], [s.objects for s in samples], n_levels)
    print("window pixels per energy level: " + ", ".join(f"{k}: {100 * v:.1f} %" for k, v in enumerate(share)))


def toy_cross_check(
    dataset: CMPFacadeInstances, *, match_fn: Callable, ap_fn: Callable, n_facades: int = 3, seed: int = 0
) -> None:
    """The student's AP against pycocotools' on toy predictions; prints both.

    The toy predictions of the first n_facades facades: their true window instances shifted by one pixel, with
    random scores, plus misplaced copies of a third of them (false positives). Skipped (one line) while
    match_fn or ap_fn is still a stub.
    """
    from starter.notebook import skip_if_undone

    generator = torch.Generator().manual_seed(seed)
    predictions, targets = [], []
    for index in range(min(n_facades, len(dataset))):
        target = window_targets(dataset, index)
        shifted = torch.roll(target["masks"], shifts=1, dims=2)
        false = torch.roll(target["masks"][: len(target["masks"]) // 3], shifts=9, dims=1)  # misplaced copies
        masks = torch.cat([shifted, false])
        predictions.append(
            {
                "masks": masks,
                "scores": torch.rand(len(masks), generator=generator),
                "labels": torch.ones(len(masks), dtype=torch.int64),
            }
        )
        targets.append(target)
    with skip_if_undone("the toy evaluation"):
        yours = evaluate_instances(predictions, targets, match_fn=match_fn, ap_fn=ap_fn, classes=["window"])
        coco = coco_mask_map(predictions, targets, classes=["window"])
        print(
            f"toy windows: AP50 yours {yours['ap50']['window']:.3f}, COCO {coco['ap50']['window']:.3f}; "
            f"mAP yours {yours['map']['window']:.3f}, COCO {coco['map']['window']:.3f}"
        )


# --- the experiments ------------------------------------------------------------------------------


@dataclass
class InstanceExperiments:
    """The runs folder, the test facades and the student's matching and AP: what every instance result needs.

    ``test_targets`` (the true window instances of every test facade) and ``true_counts`` (their number) are
    computed once; the figures show the first ``n_shown`` test facades.
    """

    store: RunStore
    data: InstanceData
    match_fn: Callable[..., torch.Tensor]
    ap_fn: Callable[..., float]
    profile: str
    device: torch.device
    n_shown: int = 3
    test_targets: list[dict[str, torch.Tensor]] = field(init=False)
    true_counts: list[int] = field(init=False)

    def __post_init__(self) -> None:
        test_set = self.data.test
        self.test_targets = [window_targets(test_set, index) for index in range(len(test_set))]
        self.true_counts = [len(target["masks"]) for target in self.test_targets]

    @property
    def fast(self) -> bool:
        """Fast mode (the "fast" profile): a couple of training steps, no progress bars."""
        return self.profile == "fast"

    @classmethod
    def open(
        cls, assignment: str, data: InstanceData, *, match_fn: Callable, ap_fn: Callable, profile: str, device: Any
    ) -> InstanceExperiments:
        """The experiments of the assignment's runs folder (``starter.runs.runs_dir``; printed)."""
        from starter.runs import runs_dir

        store = RunStore(runs_dir(assignment))
        print(f"runs folder: {store.root}")
        return cls(store, data, match_fn, ap_fn, profile, torch.device(device))

    # -- results --

    def _result(
        self, name: str, image_size: str, epochs: int, seconds: float, *, epochs_run: int | None = None, **fields: Any
    ) -> ExperimentResult:
        """An ExperimentResult of this notebook (data, profile, device filled in); no pixel metrics unless given."""
        fields = {"pixel_acc": float("nan"), "miou": float("nan"), **fields}
        return ExperimentResult(
            name=name,
            data=self.data.dataset,
            image_size=image_size,
            epochs_run=epochs if epochs_run is None else epochs_run,
            epochs_planned=epochs,
            profile=self.profile,
            device=str(self.device),
            seconds_per_epoch=seconds,
            **fields,
        )

    def instance_result(
        self,
        name: str,
        predictions: Sequence[Prediction],
        targets: Sequence[Prediction],
        counts: Sequence[int],
        classes: Sequence[str] = ("window",),
        seconds: float = float("nan"),
        epochs: int = 0,
        history: dict | None = None,
    ) -> ExperimentResult:
        """AP (the student's and COCO's), the counting error of the windows `counts` per test facade."""
        yours = evaluate_instances(predictions, targets, match_fn=self.match_fn, ap_fn=self.ap_fn, classes=classes)
        coco = coco_mask_map(predictions, targets, classes=classes)
        errors = [abs(p - t) for p, t in zip(counts, self.true_counts)]
        extra = {
            "AP50": yours["mean_ap50"],
            "mAP": yours["mean_map"],
            "AP50_coco": coco["mean_ap50"],
            "mAP_coco": coco["mean_map"],
            "count_MAE": float(np.mean(errors)),
            "count_rel": float(np.mean([e / max(t, 1) for e, t in zip(errors, self.true_counts)])),
            **{f"AP50 {c}": v for c, v in yours["ap50"].items()},
            **{f"mAP {c}": v for c, v in yours["map"].items()},
            **{f"count {i}": c for i, c in enumerate(counts)},
            "pr precision window": coco["curves"]["window"][1].tolist() if "window" in coco["curves"] else [],
        }
        return self._result(
            name, f"longest side {self.data.longest_side}", epochs, seconds, history=history or {}, extra=extra
        )

    def matches_figure(self, predictions: Sequence[Prediction], targets: Sequence[Prediction], threshold: float = 0.5):
        """Matched (green), false (red) and missed (blue) windows on the shown facades, matched with match_fn."""
        test_set, shown = self.data.test, list(range(min(self.n_shown, len(self.data.test))))
        matched = [
            self.match_fn(predictions[i]["masks"], predictions[i]["scores"], targets[i]["masks"], threshold)
            for i in shown
        ]
        return show_matches(
            [test_set[i][0] for i in shown],
            [predictions[i]["masks"] for i in shown],
            [targets[i]["masks"] for i in shown],
            matched,
            titles=[test_set.names[i] for i in shown],
        )

    def _windows_run(self, name: str, predict: Callable[[], list[Prediction]], **extra: Any) -> ExperimentResult | None:
        """run_or_load of window predictions on the test set: the result, `extra` in it, and its matches figure."""

        def run(checkpoint_path: Path) -> ExperimentResult:
            started = time.time()
            predictions = predict()
            result = self.instance_result(
                name,
                predictions,
                self.test_targets,
                [len(p["masks"]) for p in predictions],
                seconds=time.time() - started,
            )
            result.extra.update(extra)
            self.store.save_figure(name, self.matches_figure(predictions, self.test_targets), "matches")
            return result

        return run_or_load(self.store, name, run)

    # -- part 1: classical --

    def classical(
        self,
        name: str,
        window_maps: Sequence[torch.Tensor],
        split: SplitFn,
        probabilities: Sequence[torch.Tensor] | None = None,
        *,
        coco_map: bool = True,
    ) -> dict[str, ExperimentResult | None]:
        """Components and watershed (``split``) on window maps bool (H, W) of the test facades: two results,
        "<method> on <name>", each printed; instances ranked by their mean window probability (H, W) when
        `probabilities` are given, else by area."""
        results: dict[str, ExperimentResult | None] = {}
        for method in ("components", "watershed"):

            def predict(method: str = method) -> list[Prediction]:
                return [
                    scored(split(window_map)[method], None if probabilities is None else probabilities[index])
                    for index, window_map in enumerate(window_maps)
                ]

            results[method] = self._windows_run(f"{method} on {name}", predict)
        for result in filter(None, results.values()):
            print_result(result, coco_map=coco_map)
        return results

    def semantic(self, name: str, model: nn.Module, *, epochs: int, batch_size: int) -> ExperimentResult | None:
        """Train a semantic network on all classes (``starter.train.fit``, resumable), then its IoU on the test
        facades; the trained weights are loaded into `model` (on the device). Prints the IoUs."""
        from starter.data import FolderSegmentation
        from starter.instance import predict_semantic
        from starter.train import fit
        from starter.transforms import Compose, Normalize, PadTo, ResizeLongest, ToTensor

        fast = self.fast
        n_class, side, device, test_set = len(CMP_CLASSES), self.data.longest_side, self.device, self.data.test
        train_data = FolderSegmentation(
            self.data.train.folder,
            "train",
            n_class=n_class,
            transforms=Compose([ResizeLongest(side), PadTo(side, side), ToTensor(), Normalize()]),
        )

        def train(checkpoint_path: Path) -> ExperimentResult:
            loader = DataLoader(train_data, batch_size=batch_size, shuffle=True, drop_last=True)
            history = fit(
                model,
                loader,
                n_class=n_class,
                epochs=epochs,
                loss_fn=nn.CrossEntropyLoss(ignore_index=255),
                optimizer=torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4),
                scheduler="cosine",
                device=device,
                checkpoint_path=checkpoint_path,
                resume=True,
                max_steps_per_epoch=2 if fast else None,
                progress=not fast,
                verbose=not fast,
            )
            conf = torch.zeros(n_class, n_class, dtype=torch.int64)
            for index in range(len(test_set)):
                truth = test_set.label_mask(index).reshape(-1)
                predicted = predict_semantic(model, test_set.load_image(index), device).argmax(0).reshape(-1)
                labelled = truth < n_class
                conf += torch.bincount(truth[labelled] * n_class + predicted[labelled], minlength=n_class**2).reshape(
                    n_class, n_class
                )
            iou = conf.diag() / (conf.sum(0) + conf.sum(1) - conf.diag()).clamp(min=1)
            present = (conf.sum(0) + conf.sum(1)) > 0
            return self._result(
                name,
                f"{side}x{side}",
                epochs,
                float(np.mean(history.epoch_time)),
                epochs_run=len(history.train_loss),
                pixel_acc=float(conf.diag().sum() / conf.sum()),
                miou=float(iou[present].mean()),
                per_class_iou={c: float(v) if p else float("nan") for c, v, p in zip(CMP_CLASSES, iou, present)},
                confusion=conf.tolist(),
                history=history.as_dict(),
            )

        result = run_or_load(self.store, name, train)
        model.load_state_dict(torch.load(self.store.checkpoint_path(name), map_location="cpu"))
        model.to(device)
        print(f"semantic network: test mIoU {result.miou:.3f}, window IoU {result.per_class_iou['window']:.3f}")
        return result

    # -- part 1b: the deep watershed --

    def two_heads(
        self,
        name: str,
        semantic_model: nn.Module,
        energy_targets_fn: Callable[..., torch.Tensor],
        energy_loss_fn: Callable[..., torch.Tensor],
        *,
        n_levels: int,
        step: float,
        crop: int,
        epochs: int,
        batch_size: int,
    ) -> tuple[nn.Module, ExperimentResult | None]:
        """A TwoHeadNet on the trained `semantic_model`, the training facades' window energy targets (``WindowEnergyData`` with the student's energy_targets:
        each level's share printed), then a TwoHeadNet trained on them (``starter.deep_watershed.train_two_heads``:
        the semantic head's cross-entropy plus the student's energy loss); the trained weights loaded.

        Inputs: n_levels, step: energy_targets' K and level width; crop: training crops' side (pixels).
        Returns: (the network, its result (losses only)); the result is None (said in one line) while a unit it
        needs is still a stub.
        """
        from starter.deep_watershed import TwoHeadNet, WindowEnergyData
        from starter.notebook import skip_if_undone

        fast = self.fast
        model = TwoHeadNet(semantic_model, n_levels)
        energy_data = None
        with skip_if_undone("the energy targets"):
            window_label = 1 + list(self.data.classes).index("window")  # the window instances' label
            energy_data = WindowEnergyData(
                self.data.train, CMP_CLASSES.index("window"), window_label, energy_targets_fn, n_levels, step, crop
            )
            print_level_shares(energy_data, n_levels)
        if energy_data is None:
            return model, None
        from starter.config import seed_everything
        from starter.deep_watershed import train_two_heads

        def train(checkpoint_path: Path) -> ExperimentResult:
            seed_everything(0)
            loader = DataLoader(energy_data, batch_size=batch_size, shuffle=True, drop_last=True)
            history = train_two_heads(
                model,
                loader,
                energy_loss_fn,
                epochs=epochs,
                lr=2e-3,
                device=self.device,
                max_steps_per_epoch=2 if fast else None,
                verbose=not fast,
            )
            torch.save(model.state_dict(), checkpoint_path)
            losses = [s + e for s, e in zip(history.semantic_loss, history.energy_loss)]
            return self._result(
                name,
                f"crops {crop}x{crop}",
                epochs,
                float(np.mean(history.epoch_time)),
                history={
                    "train_loss": losses,
                    "semantic_loss": history.semantic_loss,
                    "energy_loss": history.energy_loss,
                    "epoch_time": history.epoch_time,
                },
            )

        result = run_or_load(self.store, name, train)
        if result is not None:
            model.load_state_dict(torch.load(self.store.checkpoint_path(name), map_location="cpu"))
            model.to(self.device)
        return model, result

    def choose_cut_level(self, model: nn.Module, instances_fn: DeepInstances, n_levels: int) -> int:
        """The cut level with the best window AP50 on the validation facades (the student's matching and AP);
        prints every level's."""
        from starter.deep_watershed import predict_two_heads

        val_set = self.data.val
        outputs = [predict_two_heads(model, val_set.load_image(index), self.device) for index in range(len(val_set))]
        targets = [window_targets(val_set, index) for index in range(len(val_set))]
        cut_ap50 = {}
        for cut_level in range(1, n_levels):
            predictions = [scored(instances_fn(p > 0.5, levels, cut_level), p) for p, levels in outputs]
            cut_ap50[cut_level] = evaluate_instances(
                predictions, targets, match_fn=self.match_fn, ap_fn=self.ap_fn, classes=["window"]
            )["mean_ap50"]
        best = max(cut_ap50, key=cut_ap50.get)
        print(
            "validation AP50 per cut level: "
            + ", ".join(f"{k}: {v:.3f}" for k, v in cut_ap50.items())
            + f"; cutting at {best}"
        )
        return best

    def deep_watershed(
        self,
        model: nn.Module,
        trained: ExperimentResult | None,
        instances_fn: DeepInstances,
        n_levels: int,
        predicted_maps: Sequence[torch.Tensor],
        window_probabilities: Sequence[torch.Tensor],
    ) -> DeepCut | None:
        """Cut a trained TwoHeadNet's energy at the level chosen on the validation facades (``choose_cut_level``),
        on its own window maps ("deep watershed") and on the semantic network's `predicted_maps` bool (H, W) ranked
        by its `window_probabilities` (H, W) ("deep watershed on predicted window maps"): two results, printed.

        Returns: the cut level and the network's outputs on the test facades; None, said in one line, when the
        network is not trained (`trained` None) or a unit it needs is still a stub.
        """
        from starter.deep_watershed import predict_two_heads
        from starter.notebook import skip_if_undone

        if not trained:
            print("deep watershed: no two-head network to cut yet (it is not trained).")
            return None
        with skip_if_undone("the deep watershed"):
            cut_level = self.choose_cut_level(model, instances_fn, n_levels)
            test_set = self.data.test
            outputs = [predict_two_heads(model, test_set.load_image(i), self.device) for i in range(len(test_set))]
            # (window maps, the window probability that ranks the instances) of each result
            deep_maps = {
                "deep watershed": ([p > 0.5 for p, _ in outputs], [p for p, _ in outputs]),
                "deep watershed on predicted window maps": (predicted_maps, window_probabilities),
            }
            for name, (window_maps, probabilities) in deep_maps.items():

                def predict(window_maps: Sequence = window_maps, probabilities: Sequence = probabilities) -> list:
                    return [
                        scored(instances_fn(window_map, levels, cut_level), p)
                        for window_map, p, (_, levels) in zip(window_maps, probabilities, outputs)
                    ]

                print_result(self._windows_run(name, predict, cut_level=cut_level), coco_map=False)
            return DeepCut(cut_level, outputs)
        return None

    # -- part 2: Mask R-CNN --

    def mask_rcnn(
        self,
        train_data: Any,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        **options: Any,
    ) -> ExperimentResult | None:
        """Build Mask R-CNN, train it on `train_data` (resumable), evaluate it on the test facades; prints the result.

        It runs on a GPU, or in the full and fast profiles (on a CPU one epoch of the cpu profile takes hours: it is
        skipped with a line saying so). The full profile starts from the COCO weights when they can be had (else
        from scratch, with a message); fast mode uses few proposals and sampled regions.

        Inputs: options: build_mask_rcnn's min_size, detections_per_image (max_size: the data's longest side).
        Returns: the result (all classes' AP, window counts at score >= 0.5); None when skipped.
        """
        from starter.backbones import PretrainedWeightsUnavailable
        from starter.config import seed_everything
        from starter.instance import build_mask_rcnn
        from starter.instance.detection import train_detection

        classes, fast = self.data.classes, self.fast
        if not (fast or self.device.type == "cuda" or self.profile == "full"):
            print(
                "Mask R-CNN skipped: no GPU, and one epoch takes hours on a CPU (the cpu profile trains it only on a "
                "GPU; SEGKIT_PROFILE=full trains it anyway)."
            )
            return None
        seed_everything(0)
        model, name = None, "Mask R-CNN (scratch)"
        options = {"max_size": self.data.longest_side, **options}
        if self.profile == "full":
            try:
                model, name = (
                    build_mask_rcnn(len(classes) + 1, coco_weights=True, **options),
                    "Mask R-CNN (COCO weights)",
                )
            except PretrainedWeightsUnavailable as error:
                print(f"COCO weights unavailable, training from scratch instead:\n{error}")
        if model is None:
            model = build_mask_rcnn(len(classes) + 1, **options, **(FAST_MASK_RCNN_OPTIONS if fast else {}))
        train_loader = DataLoader(
            train_data,
            batch_size=batch_size,
            shuffle=True,
            collate_fn=collate_detection,
            num_workers=0 if fast else 2,
            drop_last=True,
        )
        test_loader = DataLoader(self.data.test, batch_size=batch_size, collate_fn=collate_detection)

        def train(checkpoint_path: Path) -> ExperimentResult:
            history = train_detection(
                model,
                train_loader,
                checkpoint_path,
                epochs=epochs,
                lr=lr,
                device=self.device,
                max_steps=2 if fast else None,
                progress=not fast,
            )
            predictions, targets = predict_instances(model, test_loader, self.device, progress=not fast)
            counts = [int(((p["labels"] == 1) & (p["scores"] >= 0.5)).sum()) for p in predictions]
            result = self.instance_result(
                name,
                predictions,
                targets,
                counts,
                classes=classes,
                seconds=float(np.mean(history["epoch_time"])),
                epochs=epochs,
                history={"train_loss": history["train_loss"], "epoch_time": history["epoch_time"]},
            )
            windows = [{k: v[p["labels"] == 1] for k, v in p.items()} for p in predictions]
            self.store.save_figure(name, self.matches_figure(windows, self.test_targets), "matches")
            return result

        result = run_or_load(self.store, name, train)
        if result is not None:
            print_result(result)
        return result


# --- the results' section --------------------------------------------------------------------------


def show_results_tables(store: RunStore) -> dict[str, ExperimentResult]:
    """The AP and counting table of every instance result in `store`, then each multi-class result's AP50 per
    class. Returns: every result, by name."""
    from IPython.display import Markdown, display

    from starter.viz import results_table

    results = store.results()
    summary = ("AP50", "AP50_coco", "mAP", "mAP_coco", "count_MAE", "count_rel")
    rows = {
        name: {key: r.extra.get(key, float("nan")) for key in summary}
        for name, r in results.items()
        if "AP50" in r.extra
    }
    display(Markdown(results_table(rows)))
    for name, r in results.items():
        per_class = {key[5:]: value for key, value in r.extra.items() if key.startswith("AP50 ")}
        if len(per_class) > 1:
            listed = ", ".join(f"{c} {v:.3f}" for c, v in per_class.items())
            display(Markdown(f"**{name}**, AP50 per class: " + listed))
    return results


def window_counts(results: Mapping[str, ExperimentResult], n_facades: int) -> dict[str, list[int]]:
    """{result name: windows counted on each test facade} of the results that saved their counts."""
    return {
        name: [int(r.extra[f"count {i}"]) for i in range(n_facades)]
        for name, r in results.items()
        if "count 0" in r.extra
    }


def window_pr_curves(results: Mapping[str, ExperimentResult]) -> dict[str, tuple[torch.Tensor, Any]]:
    """{result name: (recall, precision)} of the windows at IoU 0.5, pycocotools' curves saved with each result."""
    return {
        name: (torch.linspace(0, 1, len(r.extra["pr precision window"])), r.extra["pr precision window"])
        for name, r in results.items()
        if "pr precision window" in r.extra
    }


def show_saved_matches(store: RunStore, names: Sequence[str]) -> None:
    """The matches figure saved with each finished experiment of `names`, under its name."""
    from IPython.display import Image, display

    for name in names:
        if store.is_finished(name):
            print(name)
            display(Image(filename=str(store.experiment_dir(name) / "matches.png")))
