"""Tests of the KITTI and DeepGlobe Land Cover preparation scripts.

Both datasets are downloaded by hand (registration / account), so nothing here touches the internet:
each test builds a tiny zip laid out exactly like the official archive (12x20-pixel images) in tmp_path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_scripts import kitti, landcover
from data_scripts.download import ChecksumError
from starter.common import zip_bytes
from starter.constants import CITYSCAPES_TRAIN_CLASSES, KITTI_SPLIT_SIZES, LANDCOVER_CLASSES, LANDCOVER_PALETTE
from starter.data import dataset_spec

HEIGHT, WIDTH = 12, 20
SPLITS = ("train", "val", "test")
# Cityscapes label ids of the 19 evaluated classes, in train-id order (cityscapesScripts' labels.py).
EVALUATED_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
# Land-cover class 6 here = unknown (black).
LANDCOVER_COLOURS = np.array([*LANDCOVER_PALETTE, (0, 0, 0)], dtype=np.uint8)


def _encoded(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


def _smooth_image(rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, 3): a per-image colour plus a gentle gradient (survives JPEG re-encoding)."""
    values = rng.integers(30, 200, 3) + np.linspace(0, 40, WIDTH)[:, None]  # (W, 3)
    return np.repeat(values[None].astype(np.uint8), HEIGHT, axis=0)


def _splits(out: Path) -> dict[str, list[str]]:
    return {s: (out / "splits" / f"{s}.txt").read_text().split() for s in SPLITS}


def _pin_mtimes(folder: Path) -> dict[str, bytes]:
    """Set every file's mtime to a fixed old value. Returns: {relative path: bytes}."""
    files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for relative in files:
        os.utime(folder / relative, ns=(10**18, 10**18))
    return files


def _assert_untouched(folder: Path, before: dict[str, bytes]) -> None:
    """Same files, same bytes, and no image or mask written again (their pinned mtimes kept)."""
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    for path in [*(folder / "images").iterdir(), *(folder / "masks").iterdir()]:
        assert path.stat().st_mtime_ns == 10**18, path


# --- fake official archives ----------------------------------------------------------------


def _kitti_zip(folder: Path, n: int = 10, seed: int = 0) -> tuple[Path, dict[str, tuple[bytes, np.ndarray]]]:
    """``data_semantics.zip`` as published: training/{image_2,semantic,semantic_rgb,instance}, testing/image_2."""
    rng = np.random.default_rng(seed)
    pairs, members = {}, {}
    for i in range(n):
        name = f"{i:06d}_10"
        label = rng.choice([*range(34), 255], size=(HEIGHT, WIDTH)).astype(np.uint8)  # 255: licence plate (-1)
        label[0, :6] = (7, 0, 6, 26, 255, 9)  # road, unlabeled, ground, car, licence plate, parking
        pairs[name] = (_encoded(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)), label)
        members[f"training/image_2/{name}.png"] = pairs[name][0]
        members[f"training/semantic/{name}.png"] = _encoded(label)
        members[f"training/semantic_rgb/{name}.png"] = _encoded(np.stack([label] * 3, axis=-1))
        members[f"training/instance/{name}.png"] = _encoded(label.astype(np.uint16) * 256)
        members[f"testing/image_2/{name}.png"] = _encoded(np.zeros((HEIGHT, WIDTH, 3), np.uint8))  # no labels
    folder.mkdir(parents=True, exist_ok=True)
    (folder / kitti.ARCHIVE).write_bytes(zip_bytes(members))
    return folder / kitti.ARCHIVE, pairs


def _landcover_pairs(ids, rng) -> tuple[dict[str, bytes], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``<id>_sat.jpg`` + ``<id>_mask.png`` members; masks noisy around the palette (2x2 blocks of one class)."""
    members, truth = {}, {}
    for identifier in ids:
        classes = np.kron(rng.integers(0, 7, (HEIGHT // 2, WIDTH // 2)), np.ones((2, 2), int))
        classes[:2, :2] = 2  # magenta (255, 0, 255) ...
        colours = LANDCOVER_COLOURS[classes]
        noisy = np.where(colours == 255, rng.integers(200, 256, colours.shape), rng.integers(0, 100, colours.shape))
        noisy[0, 0] = (200, 127, 128)  # ... stored with values in between: snapped at 128
        image = _smooth_image(rng)
        members[f"{identifier}_sat.jpg"] = _encoded(image, "JPEG")
        members[f"{identifier}_mask.png"] = _encoded(noisy.astype(np.uint8))
        truth[identifier] = (image, classes)
    return members, truth


def _landcover_zip(folder: Path, n: int = 10, seed: int = 0):
    """``land-train.zip``: the challenge's training pairs in ``land-train/``."""
    rng = np.random.default_rng(seed)
    members, truth = _landcover_pairs([str(i) for i in rng.choice(900_000, n, replace=False) + 100_000], rng)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / landcover.CHALLENGE_ARCHIVE).write_bytes(zip_bytes({f"land-train/{k}": v for k, v in members.items()}))
    return folder / landcover.CHALLENGE_ARCHIVE, truth


def _expected_train_ids(label: np.ndarray) -> np.ndarray:
    expected = np.full(label.shape, 255, np.uint8)
    for train_id, label_id in enumerate(EVALUATED_IDS):
        expected[label == label_id] = train_id
    return expected


def _decode(rgb: np.ndarray, palette) -> np.ndarray:
    """A plain test decoder: exact palette colours -> class, anything else -> 255."""
    lookup = {tuple(colour): index for index, colour in enumerate(palette)}
    colours, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    ids = np.array([lookup.get(tuple(colour), 255) for colour in colours.tolist()], dtype=np.uint8)
    return ids[inverse.reshape(-1)].reshape(rgb.shape[:2])


# --- KITTI -------------------------------------------------------------------------------


def test_kitti_archive_becomes_images_train_id_masks_splits_and_meta(tmp_path, capsys):
    """Does data_semantics.zip become copied images, train-id masks (road 7 -> 0, ground 6 -> 255), splits and meta?"""
    archive, pairs = _kitti_zip(tmp_path / "zips")
    out = kitti.main(["--root", str(tmp_path / "data"), "--archives", str(archive.parent), "--no-progress"])
    assert out == tmp_path / "data" / "kitti"
    names = sorted(pairs)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{n}.png" for n in names]
    for name, (image_bytes, label) in pairs.items():
        assert (out / "images" / f"{name}.png").read_bytes() == image_bytes  # training/, not testing/
        with Image.open(out / "masks" / f"{name}.png") as mask_file:
            assert mask_file.mode == "L"
            mask = np.asarray(mask_file)
        assert mask[0, :6].tolist() == [0, 255, 255, 13, 255, 255]
        np.testing.assert_array_equal(mask, _expected_train_ids(label))
    assert _splits(out) == {"train": names[:8], "val": names[8:9], "test": names[9:]}  # 80 % / 10 % of 10
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == list(CITYSCAPES_TRAIN_CLASSES) and meta["n_class"] == 19
    assert meta["counts"] == {"train": 8, "val": 1, "test": 1}
    assert "{'train': 8, 'val': 1, 'test': 1}" in capsys.readouterr().out
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_kitti_split_rule_of_the_200_official_images():
    """Are the 200 sorted names split 160 / 20 / 20 at 000159_10 | 000160_10 and 000179_10 | 000180_10?"""
    names = [f"{i:06d}_10" for i in np.random.default_rng(0).permutation(200)]
    splits = kitti.split_names(names)
    assert KITTI_SPLIT_SIZES == (160, 20)
    assert [len(splits[s]) for s in SPLITS] == [160, 20, 20]
    assert splits["train"] + splits["val"] + splits["test"] == sorted(names)
    assert (splits["train"][-1], splits["val"][0]) == ("000159_10", "000160_10")
    assert (splits["val"][-1], splits["test"][0]) == ("000179_10", "000180_10")


def test_kitti_rerun_rewrites_nothing(tmp_path):
    """Does a second run leave every prepared file untouched (same bytes, image and mask mtimes kept)?"""
    archive, _ = _kitti_zip(tmp_path / "zips")
    out = kitti.prepare_kitti(tmp_path / "data", archive.parent, progress=False)
    before = _pin_mtimes(out)
    kitti.prepare_kitti(tmp_path / "data", archive.parent, progress=False)
    _assert_untouched(out, before)


def test_kitti_prepared_folder_loads_as_the_notebook_dataset(tmp_path):
    """Does dataset_spec("kitti").dataset(split) read the prepared folder with the right masks?"""
    archive, pairs = _kitti_zip(tmp_path / "zips")
    kitti.prepare_kitti(tmp_path / "data", archive.parent, progress=False)
    spec = dataset_spec("kitti", tmp_path / "data")
    assert spec.n_class == 19 and not spec.colour_masks
    test_set = spec.dataset("test")
    image, mask = test_set[0]
    assert len(test_set) == 1 and tuple(image.shape) == (3, HEIGHT, WIDTH)
    np.testing.assert_array_equal(mask.numpy(), _expected_train_ids(pairs[test_set.names[0]][1]))


# --- DeepGlobe Land Cover --------------------------------------------------------------------


def test_landcover_archive_becomes_resized_snapped_masks_splits_and_meta(tmp_path):
    """Does --size 10 give 10x6 pairs whose masks are the palette colours (200 -> 255), resized nearest, black kept?"""
    archive, truth = _landcover_zip(tmp_path / "zips")
    argv = ["--root", str(tmp_path / "data"), "--archives", str(archive.parent), "--size", "10", "--no-progress"]
    out = landcover.main(argv)
    ids = sorted(truth)
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i}.png" for i in ids]
    for identifier, (image, classes) in truth.items():
        with Image.open(out / "images" / f"{identifier}.jpg") as image_file:
            assert image_file.size == (10, 6)
            mean = np.asarray(image_file.convert("RGB")).reshape(-1, 3).mean(0)
        assert np.abs(mean - image.reshape(-1, 3).mean(0)).max() < 6
        with Image.open(out / "masks" / f"{identifier}.png") as mask_file:
            assert mask_file.mode == "RGB"
            mask = np.asarray(mask_file)
        np.testing.assert_array_equal(mask, LANDCOVER_COLOURS[classes[::2, ::2]])  # one pixel per 2x2 block
    assert any((classes == 6).any() for _, classes in truth.values())  # some black to keep
    assert _splits(out) == {"train": ids[:8], "val": ids[8:9], "test": ids[9:]}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["mask_encoding"] == "rgb" and meta["size"] == 10 and meta["classes"] == list(LANDCOVER_CLASSES)
    all_classes = np.concatenate([c[::2, ::2].ravel() for _, c in truth.values()])
    assert meta["class_fraction"]["unknown"] == pytest.approx((all_classes == 6).mean(), abs=1e-4)
    assert meta["class_fraction"]["other"] == 0


def test_landcover_kaggle_layout_at_full_size_snaps_every_pixel(tmp_path):
    """Does the Kaggle archive.zip give its train/ pairs only, full size, each channel snapped at 128?"""
    rng = np.random.default_rng(1)
    members, truth = _landcover_pairs(["119", "855", "9998"], rng)
    layout = {f"train/{k}": v for k, v in members.items()}
    layout |= {"valid/5_sat.jpg": members["119_sat.jpg"], "test/6_sat.jpg": members["855_sat.jpg"]}
    layout |= {"class_dict.csv": b"name,r,g,b\n", "metadata.csv": b"image_id,split\n"}
    (tmp_path / "zips").mkdir()
    (tmp_path / "zips" / landcover.BROWSER_ARCHIVE).write_bytes(zip_bytes(layout))
    out = landcover.prepare_landcover(tmp_path / "data", tmp_path / "zips", size=0, progress=False)
    assert sorted(p.stem for p in (out / "images").iterdir()) == ["119", "855", "9998"]  # no valid/, test/
    for identifier, (_, classes) in truth.items():
        mask = np.asarray(Image.open(out / "masks" / f"{identifier}.png"))
        assert mask.shape == (HEIGHT, WIDTH, 3) and mask[0, 0].tolist() == [255, 0, 255]
        np.testing.assert_array_equal(mask, LANDCOVER_COLOURS[classes])
    assert json.loads((out / "meta.json").read_text())["source"]["archive"] == "archive.zip"


@pytest.mark.parametrize("n, sizes", [(803, [642, 80, 81]), (25, [20, 3, 2]), (10, [8, 1, 1])])
def test_landcover_split_rule_rounds_halves_up(n, sizes):
    """Are n sorted ids split round(0.8 n) / round(0.1 n) / rest, halves rounded up (25 -> 20 / 3 / 2)?"""
    names = [str(i) for i in np.random.default_rng(n).permutation(100_000 + np.arange(n))]
    splits = landcover.split_names(names)
    assert [len(splits[s]) for s in SPLITS] == sizes
    assert splits["train"] + splits["val"] + splits["test"] == sorted(names)


def test_landcover_rerun_rewrites_nothing_and_refuses_another_size(tmp_path):
    """Does a second run leave every file untouched, and does one with another --size refuse instead of mixing?"""
    archive, _ = _landcover_zip(tmp_path / "zips")
    out = landcover.prepare_landcover(tmp_path / "data", archive.parent, size=10, progress=False)
    before = _pin_mtimes(out)
    landcover.prepare_landcover(tmp_path / "data", archive.parent, size=10, progress=False)
    _assert_untouched(out, before)
    with pytest.raises(ValueError, match="another --size"):
        landcover.prepare_landcover(tmp_path / "data", archive.parent, size=0, progress=False)


def test_landcover_prepared_folder_loads_as_the_notebook_dataset(tmp_path):
    """Does dataset_spec("landcover").dataset(split, decode_colours=...) give class ids, black as 255?"""
    archive, truth = _landcover_zip(tmp_path / "zips")
    landcover.prepare_landcover(tmp_path / "data", archive.parent, size=0, progress=False)
    spec = dataset_spec("landcover", tmp_path / "data")
    assert spec.colour_masks and spec.palette == LANDCOVER_PALETTE
    train_set = spec.dataset("train", decode_colours=_decode)
    image, mask = train_set[3]
    assert len(train_set) == 8 and tuple(image.shape) == (3, HEIGHT, WIDTH)
    classes = truth[train_set.names[3]][1]
    np.testing.assert_array_equal(mask.numpy(), np.where(classes == 6, 255, classes))


# --- both: checksum on first use, missing archive ------------------------------------------------

SCRIPTS = {
    "kitti": (lambda root, zips: kitti.prepare_kitti(root, zips, progress=False), _kitti_zip),
    "landcover": (lambda root, zips: landcover.prepare_landcover(root, zips, size=0, progress=False), _landcover_zip),
}


@pytest.mark.parametrize("dataset", sorted(SCRIPTS))
def test_archive_checksum_is_kept_on_first_use_and_a_changed_archive_is_refused(tmp_path, capsys, dataset):
    """Does the first run keep <archive>.sha256 (and meta.json the digest), and a later one refuse a changed archive?"""
    prepare, make_zip = SCRIPTS[dataset]
    archive, _ = make_zip(tmp_path / "zips")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    out = prepare(tmp_path / "data", archive.parent)
    sidecar = archive.with_name(archive.name + ".sha256")
    assert sidecar.read_text().split() == [digest, archive.name]
    assert digest in capsys.readouterr().out
    assert json.loads((out / "meta.json").read_text())["source"] == {"archive": archive.name, "sha256": digest}

    make_zip(tmp_path / "zips", seed=5)  # another file under the same name
    with pytest.raises(ChecksumError, match=rf"{archive.name}: SHA-256 .* but {archive.name}\.sha256 says {digest}"):
        prepare(tmp_path / "data", archive.parent)
    assert archive.is_file() and sidecar.read_text().split()[0] == digest  # the user's file is left alone


@pytest.mark.parametrize(
    "script, archive_names", [(kitti, ["data_semantics.zip"]), (landcover, ["land-train.zip", "archive.zip"])]
)
def test_missing_archive_says_where_to_put_it(tmp_path, capsys, script, archive_names):
    """Does a run without the archive exit 1 saying which file to get, from where, and into which folder?"""
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--root", str(tmp_path), "--no-progress"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"put it into {tmp_path / 'downloads' / script.DATASET} " in err
    assert all(name in err for name in archive_names) and script.HOMEPAGE in err and "--archives" in err
    assert not (tmp_path / script.DATASET).exists()
