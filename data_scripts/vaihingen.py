"""Prepare the ISPRS Vaihingen tiles (or any large image + colour-coded label pair) for the patches assignment.

The ISPRS 2D semantic labelling data needs a (free) registration, so it cannot be downloaded
automatically. Request it at
https://www.isprs.org/education/benchmarks/UrbanSemLab/2d-sem-label-vaihingen.aspx and put the
archives you receive into one folder::

    ISPRS_semantic_labeling_Vaihingen.zip
        .../top/top_mosaic_09cm_area<N>.tif                 IRRG orthophotos (3 bands, 8 bit)
        .../gts_for_participants/top_mosaic_09cm_area<N>.tif  labels of the 16 training areas
    ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE.zip   (optional, recommended)
        top_mosaic_09cm_area<N>.tif                           labels of all 33 areas

then run::

    python -m data_scripts.vaihingen --root DIR --archives DIR_WITH_THE_ZIPS
    python -m data_scripts.vaihingen --root DIR --image big.tif --label big_labels.png [--name mytile]

The second form takes any large RGB image with a colour-coded label image of the same size
(colours ``VAIHINGEN_PALETTE``). Result, ``DIR/vaihingen/``::

    images/<name>.png     RGB uint8 (the Vaihingen tiles are IRRG false colour)
    masks/<name>.png      single channel: 0..4 = VAIHINGEN_CLASSES, 255 = clutter/other colours (ignored)
    splits/train.txt      official training areas (labels published to participants)
    splits/test.txt       the other areas (labels only in the COMPLETE archive)
    meta.json             classes, tiles with sizes and class fractions, licence

Labels are converted with ``VAIHINGEN_PALETTE``; clutter/background (255, 0, 0) and any other
colour become ``IGNORE_INDEX``. ``load_tile(name)`` reads a prepared tile back.

``synthetic_aerial(height, width, seed)`` draws a Vaihingen-like scene (roads, buildings, trees,
low vegetation, rare cars) for fast mode, CI and tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from data_scripts.download import DatasetEntry, RemoteFile, extract, register
from data_scripts.prepare import binary_colours_to_index
from starter.common import write_atomic, write_atomically
from starter.constants import IGNORE_INDEX, VAIHINGEN_CLASSES, VAIHINGEN_N_CLASS, VAIHINGEN_PALETTE

DATASET = "vaihingen"
IMAGE_ARCHIVE = "ISPRS_semantic_labeling_Vaihingen.zip"
LABEL_ARCHIVE = "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE.zip"
HOMEPAGE = "https://www.isprs.org/education/benchmarks/UrbanSemLab/2d-sem-label-vaihingen.aspx"
CITATION = (
    "ISPRS 2D Semantic Labeling Contest — Vaihingen; Cramer 2010, DGPF (M. Cramer, The DGPF test on "
    "digital aerial camera evaluation - overview and test design, PFG 2010(2):73-82)"
)
# The 16 areas whose labels ISPRS gives to participants (gts_for_participants/): the official training set.
OFFICIAL_TRAIN_AREAS = (1, 3, 5, 7, 11, 13, 15, 17, 21, 23, 26, 28, 30, 32, 34, 37)
_TILE_NAME = re.compile(r"top_mosaic_09cm_area(\d+)\.tif$", re.IGNORECASE)

# Manual download: there is no URL to fetch from (registration needed), hence url=None.
ENTRY = register(
    DatasetEntry(
        name=DATASET,
        files=(RemoteFile(IMAGE_ARCHIVE, None), RemoteFile(LABEL_ARCHIVE, None)),  # type: ignore[arg-type]
        licence=f"Research use after registration with ISPRS; no redistribution. Cite: {CITATION}",
        citation=CITATION,
        homepage=HOMEPAGE,
    )
)

# Class indices (order of VAIHINGEN_CLASSES).
BUILDING, TREE, LOW_VEGETATION, CAR, IMPERVIOUS = range(VAIHINGEN_N_CLASS)


# --- synthetic scene ---------------------------------------------------------------------


def synthetic_aerial(height: int = 512, width: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A Vaihingen-like aerial scene with its labels.

    A grid of roads (impervious surfaces) over low vegetation, rectangular buildings with
    individual roof colours, round trees and small cars parked on the roads (about 0.3 % of
    the pixels, the rare class). Colours overlap between classes (grey roofs and roads, trees
    and lawns), so a model needs shape and context, not just colour.

    Inputs:
        height, width: size in pixels (>= 32 each).
        seed: the same seed always gives the same scene.
    Returns:
        image: uint8 (H, W, 3); mask: int64 (H, W) with class ids 0..4 (VAIHINGEN_CLASSES).
    """
    if height < 32 or width < 32:
        raise ValueError(f"synthetic_aerial needs at least 32x32 pixels, got {height}x{width}")
    rng = np.random.default_rng(seed)
    mask = np.full((height, width), LOW_VEGETATION, dtype=np.int64)
    # Float RGB; false colour like the IRRG tiles (vegetation is red).
    image = np.empty((height, width, 3), dtype=np.float64)
    image[:] = (165, 105, 100)

    # Roads every ~90 px in both directions.
    for axis, length in ((0, height), (1, width)):
        position = int(rng.integers(10, 60))
        while position < length:
            road_width = int(rng.integers(9, 15))
            index = (
                (slice(position, position + road_width), slice(None))
                if axis == 0
                else (slice(None), slice(position, position + road_width))
            )
            mask[index] = IMPERVIOUS
            image[index] = (125, 122, 128)
            position += road_width + int(rng.integers(70, 110))

    # Buildings: rectangles on free (non-road) ground, roofs of varied colour (some road-grey).
    n_buildings = max(2, height * width // 1500)
    for _ in range(n_buildings):
        h, w = (int(v) for v in rng.integers(14, 48, size=2))
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        free = mask[y : y + h, x : x + w] == LOW_VEGETATION
        if free.mean() < 0.9:
            continue
        roof = rng.choice([(150, 80, 70), (120, 120, 130), (185, 170, 160), (95, 90, 105)])
        roof = np.asarray(roof, dtype=np.float64) + rng.normal(0, 8, size=3)
        mask[y : y + h, x : x + w][free] = BUILDING
        image[y : y + h, x : x + w][free] = roof
        # a darker ridge line halfway makes roofs look like roofs
        image[y + h // 2, x : x + w][free[h // 2]] *= 0.8

    # Trees: disks over free ground or roads' edges, darker and textured.
    n_trees = max(3, height * width // 1500)
    for _ in range(n_trees):
        radius = int(rng.integers(4, 11))
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        y0, y1, x0, x1 = (
            max(0, cy - radius),
            min(height, cy + radius + 1),
            max(0, cx - radius),
            min(width, cx + radius + 1),
        )
        yy, xx = np.mgrid[y0:y1, x0:x1]
        disk = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2) & (mask[y0:y1, x0:x1] != BUILDING)
        mask[y0:y1, x0:x1][disk] = TREE
        shade = 1 - 0.35 * np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / radius  # crowns are brighter at the centre
        crown = np.stack([200 * shade, 70 * shade, 80 * shade], axis=-1)
        image[y0:y1, x0:x1][disk] = crown[disk]

    # Cars: small rectangles entirely on road pixels, until ~0.3 % of the image is car.
    target_car_pixels = 0.003 * height * width
    car_pixels, attempts = 0, 0
    while car_pixels < target_car_pixels and attempts < 200 + 50 * int(target_car_pixels):
        attempts += 1
        h, w = (4, 8) if rng.random() < 0.5 else (8, 4)
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        # one pixel of road all around, so cars never touch each other or a roof
        ring = mask[max(0, y - 1) : y + h + 1, max(0, x - 1) : x + w + 1]
        if not (ring == IMPERVIOUS).all():
            continue
        mask[y : y + h, x : x + w] = CAR
        image[y : y + h, x : x + w] = rng.choice([(40, 40, 170), (230, 230, 235), (30, 30, 35), (60, 170, 200)])
        car_pixels += h * w

    # Sensor noise and a soft illumination gradient.
    image += rng.normal(0, 10, size=image.shape)
    ramp = np.linspace(0.92, 1.08, width)[None, :, None]
    image = np.clip(image * ramp, 0, 255).astype(np.uint8)
    return image, mask


# --- preparing tiles ---------------------------------------------------------------------


def colour_labels_to_index(rgb_label: np.ndarray) -> np.ndarray:
    """Inputs: uint8 (H, W, 3) colour-coded labels. Returns: uint8 (H, W), 0..4 or IGNORE_INDEX (clutter, others)."""
    return binary_colours_to_index(rgb_label, VAIHINGEN_PALETTE, IGNORE_INDEX)


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as file:
        return np.asarray(file.convert("RGB"))


def _write_png_atomically(array: np.ndarray, path: Path) -> None:
    write_atomically(path, lambda temporary: Image.fromarray(array).save(temporary, format="PNG"))


def prepare_pair(image_path: Path, label_path: Path, out_dir: Path, name: str, *, overwrite: bool = False) -> bool:
    """Convert one image + colour label pair into ``out_dir/{images,masks}/<name>.png``.

    Returns:
        True when written, False when both files already existed (and overwrite is False).
    """
    image_dst, mask_dst = out_dir / "images" / f"{name}.png", out_dir / "masks" / f"{name}.png"
    if image_dst.is_file() and mask_dst.is_file() and not overwrite:
        return False
    image, label = _read_rgb(image_path), _read_rgb(label_path)
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(
            f"{name}: image is {image.shape[0]}x{image.shape[1]} but labels are "
            f"{label.shape[0]}x{label.shape[1]}; they must have the same size"
        )
    for sub in ("images", "masks"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    _write_png_atomically(image, image_dst)
    _write_png_atomically(colour_labels_to_index(label), mask_dst)
    return True


def _tiles_in(folder: Path, *, parent_name: str | None = None) -> dict[int, Path]:
    """{area number: path} of every top_mosaic_09cm_area<N>.tif under ``folder`` (optionally only in ``parent_name/``)."""
    found: dict[int, Path] = {}
    for path in sorted(folder.rglob("*.tif")):
        match = _TILE_NAME.search(path.name)
        if match is None or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if parent_name is not None and path.parent.name != parent_name:
            continue
        found.setdefault(int(match.group(1)), path)
    return found


def _write_meta(out_dir: Path) -> dict:
    """Rewrite splits/ and meta.json from the tiles present in ``out_dir``."""
    names = sorted(p.stem for p in (out_dir / "images").glob("*.png") if (out_dir / "masks" / p.name).is_file())
    tiles, splits = {}, {"train": [], "test": []}
    for name in names:
        mask = np.asarray(Image.open(out_dir / "masks" / f"{name}.png"))
        counts = np.bincount(mask.reshape(-1), minlength=256)
        tiles[name] = {
            "height": int(mask.shape[0]),
            "width": int(mask.shape[1]),
            "class_fraction": {c: round(float(counts[i]) / mask.size, 5) for i, c in enumerate(VAIHINGEN_CLASSES)},
            "ignored_fraction": round(float(counts[IGNORE_INDEX]) / mask.size, 5),
        }
        match = re.fullmatch(r"area(\d+)", name)
        if match:
            splits["train" if int(match.group(1)) in OFFICIAL_TRAIN_AREAS else "test"].append(name)
    (out_dir / "splits").mkdir(parents=True, exist_ok=True)
    for split, split_names in splits.items():
        sort_key = lambda n: int(n[4:])  # noqa: E731  area2 before area10
        (out_dir / "splits" / f"{split}.txt").write_text("".join(f"{n}\n" for n in sorted(split_names, key=sort_key)))
    meta = {
        "dataset": DATASET,
        "classes": list(VAIHINGEN_CLASSES),
        "n_class": VAIHINGEN_N_CLASS,
        "ignore_index": IGNORE_INDEX,
        "mask_values": "0..4 = classes; 255 = clutter/background (255, 0, 0) and any other colour",
        "tiles": tiles,
        "licence": ENTRY.licence,
        "citation": ENTRY.citation,
        "homepage": ENTRY.homepage,
    }
    write_atomic(out_dir / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return meta


def _missing_archive_message(archives_dir: Path) -> str:
    return (
        f"{IMAGE_ARCHIVE} is not in {archives_dir}. The ISPRS Vaihingen data needs a free registration "
        f"and cannot be downloaded automatically: request it at {HOMEPAGE}, put {IMAGE_ARCHIVE} (and "
        f"preferably {LABEL_ARCHIVE}) into one folder and pass it with --archives. Any large RGB image with "
        "a colour-coded label image also works: --image IMAGE --label LABELS."
    )


def prepare_vaihingen(root: str | os.PathLike, archives_dir: str | os.PathLike, *, progress: bool = True) -> Path:
    """Unpack the user-downloaded archives and prepare every labelled tile into ``<root>/vaihingen``.

    Labels come from the COMPLETE archive when it is there (all areas), otherwise from the
    image archive's ``gts_for_participants/`` (the 16 training areas).

    Returns:
        Path of ``<root>/vaihingen``.
    """
    root, archives_dir = Path(root), Path(archives_dir)
    image_zip = archives_dir / IMAGE_ARCHIVE
    if not image_zip.is_file():
        raise FileNotFoundError(_missing_archive_message(archives_dir))
    unpacked = root / "downloads" / f"{DATASET}_unpacked"
    extract(image_zip, unpacked / "images")
    images = _tiles_in(unpacked / "images", parent_name="top")
    labels = _tiles_in(unpacked / "images", parent_name="gts_for_participants")
    label_zip = archives_dir / LABEL_ARCHIVE
    if label_zip.is_file():
        extract(label_zip, unpacked / "labels")
        labels.update(_tiles_in(unpacked / "labels"))
    else:
        print(
            f"warning: {LABEL_ARCHIVE} not found in {archives_dir}; only the training areas have labels",
            file=sys.stderr,
        )
    areas = sorted(set(images) & set(labels))
    if not areas:
        raise FileNotFoundError(
            f"no top/top_mosaic_09cm_area<N>.tif with matching labels found in {image_zip}"
            + (f" and {label_zip}" if label_zip.is_file() else "")
        )
    out_dir = root / DATASET
    for i, area in enumerate(areas):
        if progress:
            print(f"\rarea{area} ({i + 1}/{len(areas)})", end="", file=sys.stderr)
        prepare_pair(images[area], labels[area], out_dir, f"area{area}")
    if progress:
        print(file=sys.stderr)
    _write_meta(out_dir)
    return out_dir


def prepare_custom(
    root: str | os.PathLike, image: str | os.PathLike, label: str | os.PathLike, name: str | None = None
) -> Path:
    """Prepare one image + colour-coded label pair as tile ``name`` (default: the image's file stem)."""
    image, label = Path(image), Path(label)
    for path in (image, label):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
    name = name or image.stem
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"tile name {name!r} may only hold letters, digits, '_', '-' and '.'")
    out_dir = Path(root) / DATASET
    prepare_pair(image, label, out_dir, name, overwrite=True)
    _write_meta(out_dir)
    return out_dir


# --- reading prepared tiles --------------------------------------------------------------


def dataset_dir(root: str | os.PathLike | None = None) -> Path:
    if root is None:
        from starter.common import data_root

        root = data_root()
    return Path(root) / DATASET


def list_tiles(split: str | None = None, root: str | os.PathLike | None = None) -> list[str]:
    """Names of the prepared tiles (``split``: "train", "test" or None for all)."""
    folder = dataset_dir(root)
    if not (folder / "meta.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not prepared; run: python -m data_scripts.vaihingen --root "
            f"{folder.parent} --archives DIR_WITH_THE_ZIPS (see its --help)"
        )
    if split is None:
        return sorted(json.loads((folder / "meta.json").read_text())["tiles"])
    return (folder / "splits" / f"{split}.txt").read_text().split()


def load_tile(name: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a prepared tile.

    Returns:
        image: uint8 (H, W, 3); mask: int64 (H, W) with 0..4 and IGNORE_INDEX.
    """
    folder = dataset_dir(root)
    image_path, mask_path = folder / "images" / f"{name}.png", folder / "masks" / f"{name}.png"
    if not (image_path.is_file() and mask_path.is_file()):
        raise FileNotFoundError(
            f"tile {name!r} is not prepared in {folder}; run python -m data_scripts.vaihingen (see its --help)"
        )
    image = _read_rgb(image_path)
    with Image.open(mask_path) as file:
        mask = np.asarray(file).astype(np.int64)
    return image, mask


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=None, help="data root (default: $SEGKIT_DATA or ~/segkit-data)")
    parser.add_argument(
        "--archives",
        type=Path,
        default=None,
        help=f"folder holding the downloaded {IMAGE_ARCHIVE} (and {LABEL_ARCHIVE})",
    )
    parser.add_argument("--image", type=Path, default=None, help="any large RGB image (instead of --archives)")
    parser.add_argument("--label", type=Path, default=None, help="its colour-coded labels (VAIHINGEN_PALETTE)")
    parser.add_argument("--name", default=None, help="tile name for --image/--label (default: image file stem)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress output")
    args = parser.parse_args(argv)
    root = args.root if args.root is not None else dataset_dir().parent
    if (args.image is None) != (args.label is None):
        parser.error("--image and --label go together")
    if args.image is not None:
        out_dir = prepare_custom(root, args.image, args.label, args.name)
    elif args.archives is not None:
        out_dir = prepare_vaihingen(root, args.archives, progress=not args.no_progress)
    else:
        parser.error(_missing_archive_message(Path("<no --archives given>")))
    tiles = json.loads((out_dir / "meta.json").read_text())["tiles"]
    print(
        f"Vaihingen ready in {out_dir}: {len(tiles)} tiles ({', '.join(sorted(tiles)[:6])}{', ...' if len(tiles) > 6 else ''})"
    )
    return out_dir


if __name__ == "__main__":
    main()
