"""Tests of data_scripts.vaihingen: the synthetic scene, archive preparation and custom pairs (offline, tiny files)."""

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from data_scripts import download as dl
from data_scripts import vaihingen as vh
from starter.constants import IGNORE_INDEX, VAIHINGEN_CLUTTER_RGB, VAIHINGEN_N_CLASS, VAIHINGEN_PALETTE


def test_synthetic_aerial_shapes_classes_and_rare_cars():
    image, mask = vh.synthetic_aerial(256, 320, seed=3)
    assert image.shape == (256, 320, 3) and image.dtype == np.uint8
    assert mask.shape == (256, 320) and mask.dtype == np.int64
    fractions = np.bincount(mask.ravel(), minlength=VAIHINGEN_N_CLASS) / mask.size
    assert len(fractions) == VAIHINGEN_N_CLASS and (fractions > 0).all()
    assert 0.002 <= fractions[vh.CAR] <= 0.006  # the rare class, about 0.3 %
    assert fractions[vh.CAR] == fractions.min()


def test_synthetic_aerial_is_deterministic_and_seeded():
    a_image, a_mask = vh.synthetic_aerial(64, 96, seed=1)
    b_image, b_mask = vh.synthetic_aerial(64, 96, seed=1)
    c_image, _ = vh.synthetic_aerial(64, 96, seed=2)
    assert np.array_equal(a_image, b_image) and np.array_equal(a_mask, b_mask)
    assert not np.array_equal(a_image, c_image)
    with pytest.raises(ValueError):
        vh.synthetic_aerial(16, 64, seed=0)


def test_registry_entry_is_a_manual_download():
    entry = dl.REGISTRY["vaihingen"]
    assert {f.filename for f in entry.files} == {vh.IMAGE_ARCHIVE, vh.LABEL_ARCHIVE}
    assert all(f.url is None for f in entry.files)
    assert "Vaihingen" in entry.citation and "Cramer 2010" in entry.citation and "DGPF" in entry.citation


def _colour_labels(mask):
    """Index mask (with 255 = clutter) -> official colour-coded label image."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:VAIHINGEN_N_CLASS] = VAIHINGEN_PALETTE
    lut[IGNORE_INDEX] = VAIHINGEN_CLUTTER_RGB
    return lut[mask]


def _write_tif(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="TIFF")


def _fake_archives(folder, areas, complete_areas):
    """Zips laid out like the official ones, with tiny tiles; returns {area: (image, index mask)}."""
    tiles = {}
    staging = folder / "staging"
    for area in areas:
        image, mask = vh.synthetic_aerial(40, 48 + area, seed=area)
        mask = mask.astype(np.uint8)
        mask[:3, :3] = IGNORE_INDEX  # a clutter corner
        tiles[area] = (image, mask)
        _write_tif(image, staging / "img" / "top" / f"top_mosaic_09cm_area{area}.tif")
        if area in vh.OFFICIAL_TRAIN_AREAS:
            _write_tif(
                _colour_labels(mask), staging / "img" / "gts_for_participants" / f"top_mosaic_09cm_area{area}.tif"
            )
        if area in complete_areas:
            _write_tif(_colour_labels(mask), staging / "gt" / f"top_mosaic_09cm_area{area}.tif")
    folder.mkdir(exist_ok=True)
    with zipfile.ZipFile(folder / vh.IMAGE_ARCHIVE, "w") as archive:
        for path in sorted((staging / "img").rglob("*.tif")):
            archive.write(path, path.relative_to(staging / "img").as_posix())
    if complete_areas:
        with zipfile.ZipFile(folder / vh.LABEL_ARCHIVE, "w") as archive:
            for path in sorted((staging / "gt").rglob("*.tif")):
                archive.write(path, path.name)
    return tiles


def test_prepare_from_archives_converts_colours_and_splits(tmp_path):
    archives = tmp_path / "zips"
    tiles = _fake_archives(archives, areas=(1, 2, 3), complete_areas=(1, 2, 3))
    out_dir = vh.prepare_vaihingen(tmp_path / "data", archives, progress=False)
    assert out_dir == tmp_path / "data" / "vaihingen"
    for area, (image, mask) in tiles.items():
        loaded_image, loaded_mask = vh.load_tile(f"area{area}", root=tmp_path / "data")
        assert np.array_equal(loaded_image, image)
        assert loaded_mask.dtype == np.int64 and np.array_equal(loaded_mask, mask.astype(np.int64))
        assert loaded_mask[0, 0] == IGNORE_INDEX  # clutter (255, 0, 0) -> ignore
    assert vh.list_tiles("train", root=tmp_path / "data") == ["area1", "area3"]  # official training areas
    assert vh.list_tiles("test", root=tmp_path / "data") == ["area2"]
    meta = json.loads((out_dir / "meta.json").read_text())
    assert meta["n_class"] == VAIHINGEN_N_CLASS and set(meta["tiles"]) == {"area1", "area2", "area3"}
    # re-running is safe and changes nothing
    vh.prepare_vaihingen(tmp_path / "data", archives, progress=False)
    assert np.array_equal(vh.load_tile("area2", root=tmp_path / "data")[1], tiles[2][1].astype(np.int64))


def test_prepare_without_complete_labels_uses_participant_labels(tmp_path):
    archives = tmp_path / "zips"
    _fake_archives(archives, areas=(1, 2), complete_areas=())
    vh.prepare_vaihingen(tmp_path / "data", archives, progress=False)
    assert vh.list_tiles(root=tmp_path / "data") == ["area1"]  # area2 has no labels without the COMPLETE zip


def test_missing_archive_explains_the_manual_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="registration"):
        vh.prepare_vaihingen(tmp_path / "data", tmp_path / "empty", progress=False)


def test_custom_image_and_label_pair_through_the_cli(tmp_path):
    image, mask = vh.synthetic_aerial(50, 70, seed=9)
    Image.fromarray(image).save(tmp_path / "scene.png")
    colours = _colour_labels(mask.astype(np.uint8))
    colours[0, 0] = (10, 20, 30)  # an unknown colour -> ignore
    Image.fromarray(colours).save(tmp_path / "scene_labels.png")
    out_dir = vh.main(
        [
            "--root",
            str(tmp_path / "data"),
            "--image",
            str(tmp_path / "scene.png"),
            "--label",
            str(tmp_path / "scene_labels.png"),
            "--name",
            "mytile",
            "--no-progress",
        ]
    )
    loaded_image, loaded_mask = vh.load_tile("mytile", root=tmp_path / "data")
    assert out_dir.name == "vaihingen" and np.array_equal(loaded_image, image)
    expected = mask.copy()
    expected[0, 0] = IGNORE_INDEX
    assert np.array_equal(loaded_mask, expected)


def test_custom_pair_of_different_sizes_is_rejected(tmp_path):
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((10, 13, 3), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match="same size"):
        vh.prepare_custom(tmp_path / "data", tmp_path / "a.png", tmp_path / "b.png")
