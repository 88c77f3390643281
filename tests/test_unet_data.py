"""Tests of the Stanford Background preparation script and the AP helper of the U-Net assignment.

Nothing touches the internet: a small tar.gz laid out like the official ``iccv09Data.tar.gz``
is built here and either served from 127.0.0.1 or passed with ``--archives``.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score

from data_scripts import download as dl
from data_scripts import stanford_background as sbd
from starter.constants import IGNORE_INDEX, SBD_CLASSES, SBD_N_CLASS
from starter.data import FolderSegmentation
from starter.metrics import average_precision_per_class, collect_scores

N_IMAGES = 10


def _fake_pairs(seed: int = 0) -> dict[str, tuple[bytes, str, np.ndarray]]:
    """name -> (jpg bytes, regions.txt text, expected kit mask)."""
    rng = np.random.default_rng(seed)
    pairs = {}
    for i in range(N_IMAGES):
        name = f"{int(rng.integers(1000, 9999))}{i:03d}"
        height, width = int(rng.integers(12, 20)), int(rng.integers(14, 24))
        jpg = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(jpg, format="JPEG")
        labels = rng.integers(-1, 8, (height, width))
        labels[0, 0], labels[0, 1] = -1, 7
        text = "\n".join(" ".join(str(v) for v in row) for row in labels) + "\n"
        expected = np.where(labels == -1, 8, labels).astype(np.uint8)
        pairs[name] = (jpg.getvalue(), text, expected)
    return pairs


def _official_tar(path: Path, pairs) -> Path:
    """A tar.gz laid out like iccv09Data.tar.gz (with the files the kit does not use)."""
    members = {
        f"{sbd.TOP_FOLDER}/README": b"Stanford Background Dataset\n",
        f"{sbd.TOP_FOLDER}/horizons.txt": b"".join(f"{n} 320 240 100\n".encode() for n in pairs),
    }
    for name, (jpg, text, _) in pairs.items():
        members[f"{sbd.TOP_FOLDER}/images/{name}.jpg"] = jpg
        members[f"{sbd.TOP_FOLDER}/labels/{name}.regions.txt"] = text.encode()
        members[f"{sbd.TOP_FOLDER}/labels/{name}.surfaces.txt"] = text.encode()
        members[f"{sbd.TOP_FOLDER}/labels/{name}.layers.txt"] = text.encode()
    with tarfile.open(path, "w:gz") as tarred:
        for folder in (sbd.TOP_FOLDER, f"{sbd.TOP_FOLDER}/images", f"{sbd.TOP_FOLDER}/labels"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tarred.addfile(info)
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tarred.addfile(info, io.BytesIO(content))
    return path


def _check_prepared(out: Path, pairs) -> None:
    names = sorted(pairs)
    splits = {s: (out / "splits" / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert splits == {"train": names[:8], "val": names[8:9], "test": names[9:]}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == list(SBD_CLASSES) and meta["n_class"] == 9
    assert meta["counts"] == {"train": 8, "val": 1, "test": 1}
    for name, (_, _, expected) in pairs.items():
        with Image.open(out / "masks" / f"{name}.png") as mask_file:
            assert mask_file.mode == "L"
            np.testing.assert_array_equal(np.asarray(mask_file), expected)
        with Image.open(out / "images" / f"{name}.jpg") as image_file:
            assert image_file.size == (expected.shape[1], expected.shape[0])


@pytest.fixture
def sbd_archive(tmp_path):
    pairs = _fake_pairs()
    return pairs, _official_tar(tmp_path / "iccv09Data.tar.gz", pairs)


def test_split_rule_gives_572_72_71_of_715():
    names = [f"{i:07d}" for i in range(715)]
    splits = sbd.split_names(list(reversed(names)))
    assert [len(splits[s]) for s in ("train", "val", "test")] == [572, 72, 71]
    assert splits["train"] + splits["val"] + splits["test"] == names
    with pytest.raises(ValueError, match="duplicate"):
        sbd.split_names(["a", "a"])


def test_read_regions_maps_unknown_to_misc(tmp_path):
    path = tmp_path / "x.regions.txt"
    path.write_text("-1 0 7\n3 9 -1\n")
    np.testing.assert_array_equal(sbd.read_regions(path), [[8, 0, 7], [3, IGNORE_INDEX, 8]])


def test_registry_entry_is_used():
    remote = dl.REGISTRY["stanford_background"].files[0]
    assert remote.filename == "iccv09Data.tar.gz" and remote.url.startswith("http://dags.stanford.edu/")


def test_prepare_from_archives_folder_and_rerun(tmp_path, sbd_archive):
    pairs, archive = sbd_archive
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (archive.parent / (archive.name + ".sha256")).write_text(f"{digest}  {archive.name}\n")  # as after a download
    root = tmp_path / "data"
    out = sbd.main(["--root", str(root), "--archives", str(archive.parent), "--no-progress"])
    assert out == root / "stanford_background"
    _check_prepared(out, pairs)
    mtime = (out / "masks" / f"{sorted(pairs)[0]}.png").stat().st_mtime_ns
    sbd.main(["--root", str(root), "--archives", str(archive.parent), "--no-progress"])  # idempotent
    assert (out / "masks" / f"{sorted(pairs)[0]}.png").stat().st_mtime_ns == mtime

    dataset = FolderSegmentation(out, "train", n_class=SBD_N_CLASS)
    assert len(dataset) == 8 and dataset.classes == SBD_CLASSES
    image, mask = dataset[0]
    assert image.shape[1:] == mask.shape and mask.dtype == torch.int64
    assert set(mask.unique().tolist()) <= set(range(9))


def test_prepare_downloads_from_local_server_with_checksum(tmp_path, sbd_archive, static_http_server):
    pairs, archive = sbd_archive
    data = archive.read_bytes()
    static_http_server.files["/iccv09Data.tar.gz"] = data
    url = static_http_server.url("iccv09Data.tar.gz")
    remote = dl.RemoteFile("iccv09Data.tar.gz", url, hashlib.sha256(data).hexdigest(), len(data))
    out = sbd.prepare_stanford_background(tmp_path / "ok", remote=remote, progress=False)
    _check_prepared(out, pairs)

    wrong = dl.RemoteFile("iccv09Data.tar.gz", url, "0" * 64, None)
    with pytest.raises(dl.ChecksumError):
        sbd.prepare_stanford_background(tmp_path / "bad", remote=wrong, progress=False)
    assert not (tmp_path / "bad" / "stanford_background").exists()


def test_mismatched_label_size_is_an_error(tmp_path):
    folder = tmp_path / sbd.TOP_FOLDER
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(folder / "images" / "a.jpg")
    (folder / "labels" / "a.regions.txt").write_text("0 1 2\n3 4 5\n")
    with pytest.raises(ValueError, match="mask is 2x3"):
        sbd.prepare_stanford_background(tmp_path / "out", unpacked_dir=tmp_path, progress=False)


# --- starter.metrics ----------------------------------------------------------------------


def test_average_precision_matches_sklearn_and_skips_ignore():
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(2, 4, 5, 6, generator=generator)
    target = torch.randint(0, 3, (2, 5, 6), generator=generator)  # class 3 absent
    target[0, 0] = IGNORE_INDEX
    ap = average_precision_per_class(scores, target, 4)
    assert ap.shape == (4,) and torch.isnan(ap[3])
    valid = target != IGNORE_INDEX
    flat = scores.permute(0, 2, 3, 1)[valid]
    for c in range(3):
        expected = average_precision_score((target[valid] == c).numpy(), flat[:, c].numpy())
        assert abs(float(ap[c]) - expected) < 1e-9
    perfect = torch.nn.functional.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2).float()
    assert torch.allclose(average_precision_per_class(perfect, target, 4)[:3], torch.ones(3, dtype=torch.float64))


def test_collect_scores_returns_probabilities_and_restores_mode():
    model = torch.nn.Conv2d(3, 4, 1).train()
    loader = [(torch.randn(2, 3, 8, 6), torch.zeros(2, 8, 6, dtype=torch.long))] * 3
    scores, targets = collect_scores(model, loader, "cpu", stride=2, max_batches=2)
    assert scores.shape == (4, 4, 4, 3) and targets.shape == (4, 4, 3)
    assert torch.allclose(scores.sum(1), torch.ones(4, 4, 3)) and model.training
