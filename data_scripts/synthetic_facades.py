"""Synthetic facades in the official CMP Facade layout, for the instance notebook's fast mode and tests.

    python -m data_scripts.synthetic_facades --root DIR --n 12 --size 128 96 --seed 0

writes ``cmp_bNNNN.{jpg,png,xml}`` exactly as the official base archive holds them (palette PNG
labels 1..12, object rectangles in the official XML: no root element, bare-CR line breaks, the
``<x>`` pair the top/bottom and the ``<y>`` pair the left/right as fractions of the image size)
into ``DIR/downloads/synthetic_facade/base/`` and prepares them with the kit's own CMP script
(``data_scripts.cmp_facade``) into ``DIR/synthetic_facade/``: images, masks, splits, ``objects/``,
``instances/{train,val,test}.json``. So fast mode runs the same data path as the real data.

A facade: sky, a cornice, two to four floors of windows on a grid (some in pairs), sills, balconies hiding the lower part
of some windows, and a ground floor with shops and a door. Half of the paired windows touch through
a neck of glass across their mullion (connected components merge them; watershed can split them). Sample ``i`` comes from
``numpy.random.default_rng([seed, i])``: the same arguments always give identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from starter.common import write_atomic, write_atomically
from starter.constants import CMP_CLASSES, CMP_PALETTE

FOLDER = "synthetic_facade"
# Official label ids (1..12) by name: kit class index + 1.
OFFICIAL = {name: index + 1 for index, name in enumerate(CMP_CLASSES)}
# Mean colour of each element (RGB in [0, 1]); the facade's own colour is drawn per image.
_COLOURS = {
    "background": (0.70, 0.82, 0.95),
    "cornice": (0.82, 0.80, 0.76),
    "window": (0.16, 0.20, 0.27),
    "sill": (0.88, 0.86, 0.82),
    "balcony": (0.30, 0.30, 0.32),
    "door": (0.36, 0.22, 0.12),
    "shop": (0.10, 0.12, 0.14),
}


def _rectangle(label_map: np.ndarray, objects: list, name: str, top: int, left: int, bottom: int, right: int):
    """Paint rows top..bottom-1, columns left..right-1 with ``name`` and record its rectangle (pixels)."""
    label_map[top:bottom, left:right] = OFFICIAL[name]
    objects.append({"label": OFFICIAL[name], "name": name, "rows": (top, bottom), "cols": (left, right)})


def synthetic_facade(index: int, size: Sequence[int] = (128, 96), seed: int = 0):
    """One facade.

    Inputs:
        index: sample number; size: (H, W), at least 64 x 48; seed: selects the samples.
    Returns:
        image uint8 (H, W, 3); labels uint8 (H, W) official ids 1..12; objects: [{"label": official
        id, "name", "rows": (top, bottom), "cols": (left, right)} in pixels, bottom/right exclusive].
    """
    height, width = int(size[0]), int(size[1])
    if height < 64 or width < 48:
        raise ValueError(f"size must be at least 64 x 48, got {height} x {width}")
    rng = np.random.default_rng([seed, index])
    labels = np.full((height, width), OFFICIAL["facade"], dtype=np.uint8)
    objects: list[dict] = [{"label": OFFICIAL["facade"], "name": "facade", "rows": (0, height), "cols": (0, width)}]
    sky = int(rng.integers(0, height // 10 + 1))
    labels[:sky] = OFFICIAL["background"]
    cornice = max(2, height // 40)
    _rectangle(labels, objects, "cornice", sky + 1, 0, sky + 1 + cornice, width)

    ground_top = height - int(rng.uniform(0.18, 0.24) * height)
    n_floors, n_cols = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    floor_height = (ground_top - (sky + 2 + cornice)) // n_floors
    bay = width // n_cols
    window_w = int(rng.uniform(0.45, 0.6) * bay)
    window_h = int(rng.uniform(0.5, 0.65) * floor_height)
    twins = rng.random() < 0.6  # windows in pairs
    for floor in range(n_floors):
        top = sky + 2 + cornice + floor * floor_height + (floor_height - window_h) // 2
        balcony = floor > 0 and rng.random() < 0.35
        for col in range(n_cols):
            centre = col * bay + bay // 2
            if twins:
                half = max(3, window_w // 2)
                pair = [(centre - half, centre), (centre + 1, centre + 1 + half)]  # one column apart
            else:
                pair = [(centre - window_w // 2, centre - window_w // 2 + window_w)]
            for left, right in pair:
                _rectangle(labels, objects, "window", top, left, top + window_h, right)
            if twins and rng.random() < 0.5:  # two pixels of glass across the mullion: the pair touches through a neck
                labels[top + window_h // 2 - 1 : top + window_h // 2 + 1, centre] = OFFICIAL["window"]
            if not balcony:
                _rectangle(labels, objects, "sill", top + window_h, pair[0][0] - 1, top + window_h + 2, pair[-1][1] + 1)
        if balcony:  # hides the lower third of the floor's windows, as in the real label maps
            bottom = top + window_h + 2
            _rectangle(labels, objects, "balcony", bottom - window_h // 3 - 2, bay // 4, bottom, width - bay // 4)

    # Ground floor: shops, and a door in a random bay.
    door_bay = int(rng.integers(0, n_cols))
    for col in range(n_cols):
        left, right = col * bay + bay // 8, (col + 1) * bay - bay // 8
        top = ground_top + (height - ground_top) // 6
        if col == door_bay:
            centre = (left + right) // 2
            _rectangle(labels, objects, "door", top, centre - bay // 6, height, centre + bay // 6)
        else:
            _rectangle(labels, objects, "shop", top, left, height - 1, right)
    return _render(labels, rng), labels, objects


def _render(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = labels.shape
    rows, cols = np.mgrid[0:height, 0:width]
    colours = {OFFICIAL[name]: np.asarray(colour) for name, colour in _COLOURS.items()}
    colours[OFFICIAL["facade"]] = np.asarray(rng.uniform([0.65, 0.5, 0.35], [0.9, 0.8, 0.7]))
    image = np.zeros((height, width, 3))
    for value in np.unique(labels):
        image[labels == value] = colours.get(int(value), np.asarray(CMP_PALETTE[int(value) - 1]) / 255)
    glass = labels == OFFICIAL["window"]
    image[glass] += 0.08 * np.sin(rows[glass] / 2.0 + cols[glass] / 3.0)[:, None]  # reflections
    railing = labels == OFFICIAL["balcony"]
    image[railing & (cols % 3 == 0)] += 0.25  # balusters
    image *= rng.uniform(0.85, 1.1)
    image += rng.normal(0.0, 0.035, image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def official_xml(objects: Sequence[dict], height: int, width: int) -> bytes:
    """The official object file: no root element, one tag or value per line, lines ended by a bare CR;
    the <x> pair holds top/bottom (fractions of the height), the <y> pair left/right (of the width)."""
    lines = []
    for item in objects:
        (top, bottom), (left, right) = item["rows"], item["cols"]
        lines += ["<object>", "<points>"]
        for value in (top / height, bottom / height):
            lines += ["<x>", f"{value:.5g}", "</x>"]
        for value in (left / width, right / width):
            lines += ["<y>", f"{value:.5g}", "</y>"]
        lines += ["</points>", "<label>", str(item["label"]), "</label>", "<labelname>", item["name"], "</labelname>"]
        lines += ["<flag>", "1", "</flag>", "</object>"]
    return ("\r".join(lines) + "\r").encode("ascii")


def _palette_png(labels: np.ndarray, path: Path) -> None:
    image = Image.fromarray(labels, mode="P")
    flat = [channel for colour in ((0, 0, 0), *CMP_PALETTE) for channel in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    image.save(path, format="PNG")


def write_official_files(folder: Path, *, n: int, size: Sequence[int], seed: int) -> Path:
    """``folder/base/cmp_bNNNN.{jpg,png,xml}`` for samples 0..n-1 (names from cmp_b0001). Returns: folder."""
    base = folder / "base"
    base.mkdir(parents=True, exist_ok=True)
    for index in range(n):
        stem = base / f"cmp_b{index + 1:04d}"
        image, labels, objects = synthetic_facade(index, size, seed)
        xml = official_xml(objects, *labels.shape)
        write_atomically(stem.with_suffix(".xml"), lambda t, xml=xml: t.write_bytes(xml))
        write_atomically(stem.with_suffix(".png"), lambda t, labels=labels: _palette_png(labels, t))
        jpeg = Image.fromarray(image)
        write_atomically(stem.with_suffix(".jpg"), lambda t, jpeg=jpeg: jpeg.save(t, format="JPEG", quality=95))
    return folder


def write_synthetic_facades(
    root: str | os.PathLike,
    *,
    n: int = 12,
    size: Sequence[int] = (128, 96),
    seed: int = 0,
    n_val: int = 2,
    n_test: int = 2,
    progress: bool = False,
) -> Path:
    """Write ``n`` synthetic facades in the official layout and prepare them like CMP Facade.

    Inputs:
        root: data root; n: facades; size: (H, W); seed; n_val, n_test: the last ones by name.
    Returns:
        the prepared folder ``<root>/synthetic_facade`` (read it with
        ``starter.instance.CMPFacadeInstances(root, split, dataset="synthetic_facade")``).
    """
    from data_scripts.cmp_facade import prepare_cmp_facade

    if n < n_val + n_test + 1:
        raise ValueError(f"n={n} leaves no training facade with {n_val} val and {n_test} test")
    root = Path(root)
    generator = {"n": n, "size": [int(v) for v in size], "seed": seed, "n_val": n_val, "n_test": n_test}
    out_dir = root / FOLDER
    meta_file = out_dir / "meta.json"
    if meta_file.is_file() and json.loads(meta_file.read_text()).get("generator") == generator:
        return out_dir  # already there, from the same arguments
    shutil.rmtree(out_dir, ignore_errors=True)  # other arguments: start afresh
    raw = root / "downloads" / FOLDER
    shutil.rmtree(raw, ignore_errors=True)
    write_official_files(raw, n=n, size=size, seed=seed)
    prepare_cmp_facade(
        root, unpacked_dirs=[raw], dataset=FOLDER, split_sizes=(n - n_val - n_test, n_val), progress=progress
    )
    meta = json.loads(meta_file.read_text())
    meta.update(generator=generator, source={"synthetic": n}, licence="synthetic, no restriction")
    write_atomic(meta_file, json.dumps(meta, indent=2) + "\n")
    return out_dir


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="data root; files go to ROOT/synthetic_facade")
    parser.add_argument("--n", type=int, default=12, help="number of facades")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 96), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out_dir = write_synthetic_facades(args.root, n=args.n, size=args.size, seed=args.seed)
    print(f"wrote {args.n} synthetic facades to {out_dir}")
    return out_dir


if __name__ == "__main__":
    main()
