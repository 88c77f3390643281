"""The instance assignment's data path: the official XML, COCO RLE, the CMP script's instance annotations,
the synthetic facades of fast mode, CMPFacadeInstances with torchvision.transforms.v2, and the evaluation
plumbing of starter.instance (run here with small local stand-ins for the students' functions)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_scripts import cmp_facade
from data_scripts.synthetic_facades import official_xml, synthetic_facade, write_synthetic_facades
from grader.assignments import REPO_ROOT, load_assignment
from starter.constants import CMP_CLASSES, CMP_INSTANCE_CLASS_IDS, CMP_INSTANCE_CLASSES
from starter.instance import (
    CMPFacadeInstances,
    coco_mask_map,
    collate_detection,
    evaluate_instances,
    parse_cmp_objects,
    rle_decode,
    rle_encode,
    rle_encode_crop,
    train_detection_one_epoch,
    write_instance_annotations,
)

SHARED_CMP_BASE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmp_facade_base"
INSTANCE_CLASS_IDS = list(CMP_INSTANCE_CLASS_IDS)


def reference_instance_targets():
    """The solution notebook's instance_targets (the rule lives only there: nothing shipped implements it)."""
    unit = next(u for u in load_assignment("instance").auto_units if u.grade_id == "inst_targets")
    namespace = {"torch": torch}
    exec(unit.source, namespace)
    return namespace["instance_targets"]


OFFICIAL_XML = (
    "<object>\r<points>\r<x>\r0.25\r</x>\r<x>\r0.5\r</x>\r<y>\r0.1\r</y>\r<y>\r0.3\r</y>\r</points>\r"
    "<label>\r3\r</label>\r<labelname>\rwindow\r</labelname>\r<flag>\r1\r</flag>\r</object>\r"
    "<object>\r<points>\r<x>\r0.9\r</x>\r<x>\r0.6\r</x>\r<y>\r0.7\r</y>\r<y>\r0.2\r</y>\r</points>\r"
    "<label>\r12\r</label>\r<labelname>\rshop\r</labelname>\r<flag>\r1\r</flag>\r</object>\r"
)


# --- the official XML ----------------------------------------------------------------------


def test_official_xml_is_read_with_x_as_rows(tmp_path):
    """Are <x> read as top/bottom and <y> as left/right, labels as kit class indices, from text, bytes and files?"""
    path = tmp_path / "cmp_b0001.xml"
    path.write_bytes(OFFICIAL_XML.encode())
    for source in (OFFICIAL_XML, OFFICIAL_XML.encode(), path, str(path)):
        objects = parse_cmp_objects(source)
        assert [o["label"] for o in objects] == [CMP_CLASSES.index("window"), CMP_CLASSES.index("shop")]
        assert objects[0]["box"] == (0.1, 0.25, 0.3, 0.5)
        assert objects[1]["box"] == (0.2, 0.6, 0.7, 0.9)  # corners given in either order come back sorted
    assert parse_cmp_objects("<annotation><file>x</file></annotation>") == []


def test_broken_object_files_fail_with_their_name(tmp_path):
    """Does an object without a label, or a file that is not XML, raise ValueError naming the file?"""
    path = tmp_path / "bad.xml"
    path.write_text("<object><points><x>0.1</x><y>0.2</y></points></object>")
    with pytest.raises(ValueError, match="bad.xml"):
        parse_cmp_objects(path)
    with pytest.raises(ValueError, match="not a CMP object file"):
        parse_cmp_objects("<object><points>")


def test_synthetic_xml_round_trips_through_the_parser():
    """Do the synthetic facades' XML files say what was drawn, in the official (swapped) layout?"""
    _, labels, objects = synthetic_facade(3, (96, 64), seed=5)
    parsed = parse_cmp_objects(official_xml(objects, *labels.shape))
    assert len(parsed) == len(objects)
    for item, drawn in zip(parsed, objects):
        (top, bottom), (left, right) = drawn["rows"], drawn["cols"]
        x1, y1, x2, y2 = item["box"]
        assert (round(x1 * 64), round(y1 * 96), round(x2 * 64), round(y2 * 96)) == (left, top, right, bottom)
        assert item["label"] == drawn["label"] - 1


# --- run-length encoding ----------------------------------------------------------------------


def test_rle_matches_pycocotools_and_round_trips():
    """Does rle_encode write exactly pycocotools' compressed RLE, and rle_decode (with or without a box) invert it?"""
    mask_utils = pytest.importorskip("pycocotools.mask")
    generator = np.random.default_rng(0)
    for trial in range(60):
        height, width = (int(v) for v in generator.integers(1, 30, 2))
        mask = (generator.random((height, width)) < generator.random()).astype(np.uint8)
        if trial % 3 == 0:  # one rectangle: the annotations' usual case
            mask[:] = 0
            top, left = int(generator.integers(0, height)), int(generator.integers(0, width))
            mask[top : top + 4, left : left + 5] = 1
        encoded = rle_encode(mask)
        assert encoded["counts"] == mask_utils.encode(np.asfortranarray(mask))["counts"].decode()
        assert np.array_equal(rle_decode(encoded), mask)
        rows, cols = np.nonzero(mask)
        if rows.size:
            top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            assert rle_encode_crop(mask[top:bottom, left:right], top, left, height, width) == encoded
            box = (left, top, right - left, bottom - top)
            assert np.array_equal(rle_decode(encoded, box=box), mask)
    assert np.array_equal(rle_decode({"size": [2, 3], "counts": [1, 2, 3]}), [[0, 1, 0], [1, 0, 0]])


# --- instance annotations derived by a targets function, on synthetic facades ---------------------


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("facades")
    write_synthetic_facades(root, n=7, size=(96, 72), seed=1, n_val=1, n_test=2)
    write_instance_annotations(
        root / "synthetic_facade", reference_instance_targets(), INSTANCE_CLASS_IDS, progress=False
    )
    return root


def test_synthetic_facades_are_prepared_like_cmp(synthetic_root):
    """Does the synthetic set end up in the CMP layout: splits, objects/, meta.json with the generator, and
    instances/ once the notebook's function derived them?"""
    out = synthetic_root / "synthetic_facade"
    splits = {s: (out / "splits" / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4, 1, 2]
    assert sorted(p.stem for p in (out / "objects").glob("*.xml")) == sorted(sum(splits.values(), []))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["generator"]["n"] == 7 and meta["instances"]["classes"] == list(CMP_INSTANCE_CLASSES)
    assert meta["instances"]["images_with_objects"] == {"train": 4, "val": 1, "test": 2}
    coco = json.loads((out / "instances" / "train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(CMP_INSTANCE_CLASSES)
    assert [i["name"] for i in coco["images"]] == splits["train"]


def test_the_data_script_writes_no_instances_and_needs_no_torch(tmp_path, synthetic_root):
    """Does the CMP script stop at the rectangles (no instance rule shipped) and import neither torch nor matplotlib?"""
    out = cmp_facade.prepare_cmp_facade(
        tmp_path, unpacked_dirs=[synthetic_root / "downloads" / "synthetic_facade"], split_sizes=(5, 1), progress=False
    )
    assert (out / "objects").is_dir() and not (out / "instances").exists()
    assert not hasattr(cmp_facade, "instance_annotations") and not hasattr(cmp_facade, "pixel_rectangle")
    code = "import sys, data_scripts.cmp_facade; print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert run.stdout.strip() == "[]"


def test_annotations_store_what_the_targets_function_returns(synthetic_root):
    """Is every annotation exactly the function's mask, label and box ([x, y, w, h]), with the mask's area?"""
    out = synthetic_root / "synthetic_facade"
    coco = json.loads((out / "instances" / "test.json").read_text())
    targets_fn = reference_instance_targets()
    for image in coco["images"]:
        labels = torch.from_numpy(np.asarray(Image.open(out / "masks" / f"{image['name']}.png")).astype(np.int64))
        targets = targets_fn(parse_cmp_objects(out / "objects" / f"{image['name']}.xml"), labels, INSTANCE_CLASS_IDS)
        annotations = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        assert len(annotations) == len(targets["labels"]) > 0
        for annotation, mask, label, box in zip(annotations, targets["masks"], targets["labels"], targets["boxes"]):
            assert np.array_equal(rle_decode(annotation["segmentation"]), mask.numpy())
            x1, y1, x2, y2 = box.tolist()
            assert annotation["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert annotation["area"] == int(mask.sum()) and annotation["category_id"] == int(label)


def test_annotations_are_derived_again_when_the_function_changes(tmp_path, synthetic_root):
    """Does the same function keep the written files, and another one (a bug fixed) rewrite them?"""
    out = tmp_path / "synthetic_facade"
    shutil.copytree(synthetic_root / "synthetic_facade", out)
    before = {p: p.stat().st_mtime_ns for p in (out / "instances").glob("*.json")}
    counts = write_instance_annotations(out, reference_instance_targets(), INSTANCE_CLASS_IDS, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "instances").glob("*.json")} == before and counts["train"] > 0

    def nothing_found(objects, label_mask, classes):
        height, width = label_mask.shape
        empty = torch.zeros(0, height, width, dtype=torch.uint8)
        return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "masks": empty}

    counts = write_instance_annotations(out, nothing_found, INSTANCE_CLASS_IDS, progress=False)
    assert counts == {"train": 0, "val": 0, "test": 0}
    assert json.loads((out / "instances" / "train.json").read_text())["annotations"] == []


def test_a_wrong_targets_function_is_named_with_the_image(tmp_path, synthetic_root):
    """Does a function returning the wrong thing fail with a message naming the image and what is wrong?"""
    out = tmp_path / "synthetic_facade"
    shutil.copytree(synthetic_root / "synthetic_facade", out)
    with pytest.raises(ValueError, match="instance_targets on cmp_b0001 returned list"):
        write_instance_annotations(out, lambda objects, mask, classes: [], INSTANCE_CLASS_IDS, progress=False)

    def wrong_shape(objects, label_mask, classes):
        return {"boxes": torch.zeros(1, 4), "labels": torch.ones(1), "masks": torch.zeros(1, 2, 2)}

    with pytest.raises(ValueError, match=r"masks \(1, 2, 2\).*expected \(1, 96, 72\)"):
        write_instance_annotations(out, wrong_shape, INSTANCE_CLASS_IDS, progress=False)


def test_prepared_annotations_are_read_by_pycocotools(synthetic_root):
    """Can pycocotools load the JSON and decode every mask to what rle_decode gives?"""
    coco_api = pytest.importorskip("pycocotools.coco")
    coco = coco_api.COCO(str(synthetic_root / "synthetic_facade" / "instances" / "train.json"))
    for annotation in coco.loadAnns(coco.getAnnIds())[:20]:
        assert np.array_equal(coco.annToMask(annotation), rle_decode(annotation["segmentation"]))


def test_rerun_rewrites_nothing(synthetic_root):
    """Do the same arguments leave every prepared file as it is?"""
    out = synthetic_root / "synthetic_facade"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    write_synthetic_facades(synthetic_root, n=7, size=(96, 72), seed=1, n_val=1, n_test=2)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_images_without_xml_get_no_annotation(tmp_path, synthetic_root, capsys):
    """Does the CMP script still prepare pairs without an XML file, with a warning, and do they get no instances?"""
    raw = tmp_path / "raw" / "base"
    shutil.copytree(synthetic_root / "downloads" / "synthetic_facade" / "base", raw)
    (raw / "cmp_b0001.xml").unlink()
    out = cmp_facade.prepare_cmp_facade(
        tmp_path / "data", unpacked_dirs=[raw.parent], split_sizes=(5, 1), progress=False
    )
    assert "1 images have no XML object file" in capsys.readouterr().err
    assert not (out / "objects" / "cmp_b0001.xml").exists()
    write_instance_annotations(out, reference_instance_targets(), INSTANCE_CLASS_IDS, progress=False)
    coco = json.loads((out / "instances" / "train.json").read_text())
    first = next(i["id"] for i in coco["images"] if i["name"] == "cmp_b0001")
    assert not [a for a in coco["annotations"] if a["image_id"] == first]
    assert [a for a in coco["annotations"] if a["image_id"] != first]


# --- the dataset --------------------------------------------------------------------------------


def test_dataset_items_are_what_detection_models_take(synthetic_root):
    """Does an item hold a [0, 1] image and boxes/labels/masks of the documented dtypes, resized consistently?"""
    from torchvision import tv_tensors

    dataset = CMPFacadeInstances(synthetic_root, "train", dataset="synthetic_facade", longest_side=48)
    image, target = dataset[1]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.float32 and tuple(image.shape) == (3, 48, 36)
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].dtype == torch.float32
    assert target["labels"].dtype == torch.int64 and int(target["labels"].min()) >= 1
    masks = target["masks"]
    assert isinstance(masks, tv_tensors.Mask) and masks.dtype == torch.uint8 and tuple(masks.shape[1:]) == (48, 36)
    assert len(masks) == len(target["labels"]) == len(target["boxes"]) and bool((masks.flatten(1).sum(1) > 0).all())
    labels = dataset.label_mask(1)
    for mask, label in zip(masks.bool(), target["labels"]):  # instance pixels are pixels of their class
        assert bool((labels[mask] == CMP_CLASSES.index(CMP_INSTANCE_CLASSES[int(label) - 1])).all())


def test_flip_keeps_boxes_and_masks_aligned(synthetic_root):
    """With torchvision.transforms.v2, does a horizontal flip move the boxes with the masks?"""
    from torchvision.ops import masks_to_boxes
    from torchvision.transforms import v2

    dataset = CMPFacadeInstances(
        synthetic_root, "train", transforms=v2.RandomHorizontalFlip(p=1.0), dataset="synthetic_facade"
    )
    plain = CMPFacadeInstances(synthetic_root, "train", dataset="synthetic_facade")
    image, target = dataset[0]
    original_image, original = plain[0]
    assert torch.equal(image, original_image.flip(-1)) and torch.equal(target["masks"], original["masks"].flip(-1))
    tight = masks_to_boxes(target["masks"]) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert torch.allclose(target["boxes"].as_subclass(torch.Tensor), tight)


def test_a_dataset_prepared_before_instances_says_what_to_do(tmp_path):
    """Does a CMP folder without instances/ fail with the call that derives them, and a missing one with the script?"""
    with pytest.raises(FileNotFoundError, match=r"python -m data_scripts\.cmp_facade --root"):
        CMPFacadeInstances(tmp_path, "train")
    (tmp_path / "cmp_facade").mkdir()
    (tmp_path / "cmp_facade" / "meta.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="(?s)no instance annotations yet.*write_instance_annotations"):
        CMPFacadeInstances(tmp_path, "train")


# --- evaluation plumbing ---------------------------------------------------------------------------


def _iou_table(a, b):
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(union))


def _greedy(pred_masks, scores, gt_masks, threshold):
    matched = torch.full((len(pred_masks),), -1, dtype=torch.int64)
    if len(pred_masks) and len(gt_masks):
        iou, free = _iou_table(pred_masks, gt_masks), torch.ones(len(gt_masks), dtype=torch.bool)
        for p in torch.sort(scores, descending=True, stable=True).indices.tolist():
            candidates = torch.where(free & (iou[p] >= threshold), iou[p], torch.full_like(iou[p], -1.0))
            if float(candidates.max()) >= 0:
                matched[p] = int(candidates.argmax())
                free[matched[p]] = False
    return matched


def _all_point(tp, scores, n_gt):
    if n_gt == 0 or len(tp) == 0:
        return 0.0
    hits = tp[torch.sort(scores, descending=True, stable=True).indices].double()
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
    return float((precision.flip(0).cummax(0).values.flip(0) * hits).sum() / n_gt)


def test_evaluation_agrees_with_pycocotools(synthetic_root):
    """On shifted copies of the true instances with false positives, do the pooled AP and pycocotools' agree closely?"""
    pytest.importorskip("torchmetrics")
    dataset = CMPFacadeInstances(synthetic_root, "train", dataset="synthetic_facade")
    generator = torch.Generator().manual_seed(0)
    predictions, targets = [], []
    for index in range(len(dataset)):
        masks, labels, _ = dataset.instance_masks(index)
        masks = masks.bool()
        shifted = torch.roll(masks, shifts=1, dims=2)
        false = torch.roll(masks[::3], shifts=7, dims=1)
        predictions.append(
            {
                "masks": torch.cat([shifted, false]),
                "scores": torch.rand(len(shifted) + len(false), generator=generator),
                "labels": torch.cat([labels, labels[::3]]),
            }
        )
        targets.append({"masks": masks, "labels": labels})
    ours = evaluate_instances(predictions, targets, match_fn=_greedy, ap_fn=_all_point, classes=CMP_INSTANCE_CLASSES)
    coco = coco_mask_map(predictions, targets, classes=CMP_INSTANCE_CLASSES)
    assert ours["ap"].shape == (10, len(CMP_INSTANCE_CLASSES))
    for name in CMP_INSTANCE_CLASSES:
        if ours["n_gt"][name]:
            assert abs(ours["ap50"][name] - coco["ap50"][name]) < 0.03, name
            assert abs(ours["map"][name] - coco["map"][name]) < 0.03, name
    perfect = [{"masks": t["masks"], "scores": torch.ones(len(t["masks"])), "labels": t["labels"]} for t in targets]
    assert evaluate_instances(perfect, targets, match_fn=_greedy, ap_fn=_all_point, classes=CMP_INSTANCE_CLASSES)[
        "mean_map"
    ] == pytest.approx(1.0)
    assert coco_mask_map(perfect, targets, classes=CMP_INSTANCE_CLASSES)["mean_map"] == pytest.approx(1.0)
    empty = [{"masks": t["masks"][:0], "scores": torch.zeros(0), "labels": t["labels"][:0]} for t in targets]
    assert coco_mask_map(empty, targets, classes=CMP_INSTANCE_CLASSES)["mean_ap50"] == 0.0


def test_detection_epoch_steps_per_batch_and_averages_the_loss_dict():
    """Does train_detection_one_epoch sum the loss dict, step optimizer and scheduler per batch, stop at max_steps?"""

    class TinyDetector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(()))

        def forward(self, images, targets):
            assert isinstance(images, list) and isinstance(targets, list)
            return {"loss_a": self.weight * len(images), "loss_b": self.weight**2}

    model = TinyDetector()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    batch = collate_detection([(torch.zeros(3, 4, 4), {"labels": torch.ones(1)})] * 2)
    losses = train_detection_one_epoch(
        model, [batch] * 5, optimizer, "cpu", lr_scheduler=schedule, max_steps=3, progress=False
    )
    assert set(losses) == {"loss", "loss_a", "loss_b"}
    assert schedule.last_epoch == 3 and float(model.weight.detach()) < 1.0
    assert losses["loss"] == pytest.approx(losses["loss_a"] + losses["loss_b"])


# --- the real base set -------------------------------------------------------------------------------


def _pixel_rectangle(box, height, width):
    """(top, left, bottom, right, pixels) of a rectangle given in fractions of the image (the notebook's rule)."""
    left, right = (min(max(round(v * width), 0), width) for v in (box[0], box[2]))
    top, bottom = (min(max(round(v * height), 0), height) for v in (box[1], box[3]))
    return top, left, bottom, right, max(bottom - top, 0) * max(right - left, 0)


def _class_share(labels, item):
    """Share of an object's rectangle that holds its own class in the label mask."""
    top, left, bottom, right, pixels = _pixel_rectangle(item["box"], *labels.shape)
    return float((labels[top:bottom, left:right] == item["label"]).sum()) / pixels


def test_real_rectangles_lie_on_their_objects(tmp_path):
    """On a few real CMP facades, are the instance masks mostly their class (the <x>/<y> reading is right)?"""
    if not (SHARED_CMP_BASE / "base").is_dir():
        pytest.skip(f"shared CMP Facade base copy not found at {SHARED_CMP_BASE}")
    raw = tmp_path / "raw" / "base"
    raw.mkdir(parents=True)
    for name in ("cmp_b0001", "cmp_b0005", "cmp_b0100", "cmp_b0200"):
        for extension in ("jpg", "png", "xml"):
            shutil.copyfile(SHARED_CMP_BASE / "base" / f"{name}.{extension}", raw / f"{name}.{extension}")
    out = cmp_facade.prepare_cmp_facade(
        tmp_path / "data", unpacked_dirs=[raw.parent], split_sizes=(2, 1), progress=False
    )
    write_instance_annotations(out, reference_instance_targets(), INSTANCE_CLASS_IDS, progress=False)
    for split in ("train", "val", "test"):
        coco = json.loads((out / "instances" / f"{split}.json").read_text())
        for image in coco["images"]:
            annotations = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
            objects = [
                o
                for o in parse_cmp_objects(out / "objects" / f"{image['name']}.xml")
                if CMP_CLASSES[o["label"]] in CMP_INSTANCE_CLASSES
            ]
            assert len(annotations) >= 0.9 * len(objects) > 0, image["name"]  # few rectangles miss their class
            labels = np.asarray(Image.open(out / "masks" / f"{image['name']}.png"))
            fill = [_class_share(labels, o) for o in objects if _pixel_rectangle(o["box"], *labels.shape)[4]]
            assert np.median(fill) > 0.6, image["name"]
