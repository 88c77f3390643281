"""Prepare the DeepGlobe 2018 Land Cover data (satellite images, RGB colour-coded masks) for the FCN notebook.

The FCN assignment's satellite variant: ``SEGKIT_DATASET=landcover`` runs the FCN notebook on it, its
masks decoded by the notebook's own ``rgb_to_index`` (the kit ships no general colour decoder: writing
one is the graded exercise ``fcn_rgb_to_index``).

The data cannot be fetched automatically: the challenge's files (CodaLab) and the public mirror on
Kaggle both need an account. Download by hand one of

* ``land-train.zip``: the challenge's training set, ``<id>_sat.jpg`` + ``<id>_mask.png`` pairs;
* ``deepglobe-land-cover-classification-dataset.zip`` (Kaggle, ``balraj98/deepglobe-land-cover-classification-dataset``;
  a browser saves it as ``archive.zip``): ``train/`` holds the same 803 pairs (``valid/`` and ``test/``
  have no masks, the challenge never released them);

put it into ``DIR/downloads/landcover`` (or any folder given with ``--archives``) and run::

    python -m data_scripts.landcover --root DIR [--archives FOLDER] [--size 612]
    python -m data_scripts.landcover --root DIR --from-unpacked FOLDER   # pairs already unpacked

Checksums: no SHA-256 is published for either archive. The first run computes the archive's, prints it
and keeps it next to the archive (``<archive>.sha256``, trust on first use, see ``data_scripts.download``);
later runs verify against it, and ``meta.json`` records it so that two copies can be compared.

Result, ``DIR/landcover/``::

    images/<id>.jpg     RGB, resized so that the longer side is --size (default 612 = 2448 / 4; 0 keeps 2448)
    masks/<id>.png      RGB colour-coded: LANDCOVER_PALETTE, black = unknown; every channel snapped to 0 or
                        255 (threshold 128: some official masks hold values in between), nearest-neighbour resized
    splits/{train,val,test}.txt
    meta.json           classes, palette, "mask_encoding": "rgb", class fractions, split rule, licence, checksum

Classes (``LANDCOVER_CLASSES``): urban, agriculture, rangeland, forest, water, barren. "Unknown"
(black: clouds and others) was not scored by the challenge; it is not in the palette, so ``rgb_to_index``
maps it to the ignore index like any other colour outside the palette.

Split rule: ids sorted; the first ``round(0.8 n)`` train, the next ``round(0.1 n)`` validation, the rest test
(642 / 80 / 81 of the 803 labelled images). Re-running is safe: finished pairs are skipped and every file is
written under a temporary name and renamed into place.

Licence: the imagery is DigitalGlobe's (now Maxar), released for the DeepGlobe 2018 challenge for research;
the kit found no open licence for it. Use it for coursework and research, do not redistribute it (students
download their own copy), follow the terms shown where you download it, and cite Demir et al. (below).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from data_scripts.download import DatasetEntry, DownloadError, RemoteFile, extract, register
from data_scripts.prepare import (
    binary_colours_to_index,
    snap_to_binary_colours,
    verify_manual_archive,
    write_splits_and_meta,
)
from starter.common import write_atomically
from starter.constants import (
    IGNORE_INDEX,
    LANDCOVER_CLASSES,
    LANDCOVER_N_CLASS,
    LANDCOVER_PALETTE,
    LANDCOVER_SPLIT_FRACTIONS,
    LANDCOVER_UNKNOWN_RGB,
)

DATASET = "landcover"
CHALLENGE_ARCHIVE = "land-train.zip"
KAGGLE_ARCHIVE = "deepglobe-land-cover-classification-dataset.zip"
BROWSER_ARCHIVE = "archive.zip"  # what a browser names the Kaggle download
ARCHIVES = (CHALLENGE_ARCHIVE, KAGGLE_ARCHIVE, BROWSER_ARCHIVE)  # any one of them, first found wins
DEFAULT_SIZE = 612  # 2448 / 4: FCN trains at 256 at most; --size 0 keeps the full resolution
HOMEPAGE = "http://deepglobe.org/challenge.html"
KAGGLE_PAGE = "https://www.kaggle.com/datasets/balraj98/deepglobe-land-cover-classification-dataset"
CITATION = (
    "I. Demir, K. Koperski, D. Lindenbaum, G. Pang, J. Huang, S. Basu, F. Hughes, D. Tuia, R. Raskar, "
    "DeepGlobe 2018: A Challenge to Parse the Earth through Satellite Images, CVPR Workshops 2018"
)
LICENCE = (
    "DigitalGlobe imagery released for the DeepGlobe 2018 challenge, research use; no open licence found, do not "
    f"redistribute; follow the terms where you download it. Cite: {CITATION}"
)
_PAIR = re.compile(r"^(?P<id>[^.][^/]*)_sat\.jpg$", re.IGNORECASE)

# Manual download (an account is needed on either site), hence url=None; the SHA-256 is trusted on first use.
ENTRY = register(
    DatasetEntry(
        name=DATASET,
        files=tuple(RemoteFile(name, None) for name in ARCHIVES),  # type: ignore[arg-type]
        licence=LICENCE,
        citation=CITATION,
        homepage=HOMEPAGE,
    )
)


# --- finding and converting pairs --------------------------------------------------------


def find_pairs(unpacked_dir: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """Every ``<id>_sat.jpg`` with an ``<id>_mask.png`` beside it, anywhere under ``unpacked_dir``.

    Returns:
        {id: (image path, mask path)}, ids sorted; images without a mask (Kaggle's valid/, test/) are left out.
    """
    folder = Path(unpacked_dir)
    pairs: dict[str, tuple[Path, Path]] = {}
    for image_path in sorted(folder.rglob("*_sat.jpg")):
        match = _PAIR.match(image_path.name)
        if match is None or any(part.startswith(".") for part in image_path.relative_to(folder).parts):
            continue
        mask_path = image_path.with_name(f"{match['id']}_mask.png")
        if mask_path.is_file():
            pairs.setdefault(match["id"], (image_path, mask_path))
    return dict(sorted(pairs.items()))


def clean_mask(rgb_mask: np.ndarray) -> np.ndarray:
    """Inputs: uint8 (H, W, 3) official mask. Returns: uint8 (H, W, 3), every channel 0 or 255 (threshold 128)."""
    return snap_to_binary_colours(rgb_mask)


def _resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the longer side ``size`` (unchanged when ``size`` is 0 or not smaller)."""
    if size <= 0 or max(width, height) <= size:
        return width, height
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare_pair(name: str, image_src: Path, mask_src: Path, out_dir: Path, size: int) -> bool:
    """Write ``images/<name>.jpg`` and ``masks/<name>.png`` (see the module docstring).

    Returns:
        False when both already exist (nothing done), else True.
    Raises:
        ValueError: the image and its mask differ in size.
    """
    image_dst, mask_dst = out_dir / "images" / f"{name}.jpg", out_dir / "masks" / f"{name}.png"
    if image_dst.is_file() and mask_dst.is_file():
        return False
    with Image.open(image_src) as image_file, Image.open(mask_src) as mask_file:
        if image_file.size != mask_file.size:
            raise ValueError(
                f"{name}: image is {image_file.size[1]}x{image_file.size[0]} but its mask is "
                f"{mask_file.size[1]}x{mask_file.size[0]}"
            )
        target = _resized_size(*image_file.size, size)
        image = image_file.convert("RGB")
        mask = Image.fromarray(clean_mask(np.asarray(mask_file.convert("RGB"))))
    if target != image.size:
        image = image.resize(target, Image.Resampling.BILINEAR)
        mask = mask.resize(target, Image.Resampling.NEAREST)  # labels never mix
    write_atomically(image_dst, lambda temporary: image.save(temporary, format="JPEG", quality=95))
    write_atomically(mask_dst, lambda temporary: mask.save(temporary, format="PNG"))
    return True


def split_names(
    names: Sequence[str], fractions: tuple[float, float] = LANDCOVER_SPLIT_FRACTIONS
) -> dict[str, list[str]]:
    """The split rule: sort; first round(0.8 n) train, next round(0.1 n) val, the rest test (halves round up).

    Returns:
        {"train": [...], "val": [...], "test": [...]}; for 803 ids 642 / 80 / 81.
    """
    ordered = sorted(names)
    if len(set(ordered)) != len(ordered):
        raise ValueError("duplicate sample names; each name must appear once")
    n_train = math.floor(fractions[0] * len(ordered) + 0.5)
    n_val = math.floor(fractions[1] * len(ordered) + 0.5)
    return {
        "train": ordered[:n_train],
        "val": ordered[n_train : n_train + n_val],
        "test": ordered[n_train + n_val :],
    }


def class_fractions(masks_dir: Path, names: Sequence[str]) -> dict[str, float]:
    """Fraction of the prepared pixels in each class, in "unknown" (black) and in any other colour."""
    with_unknown = (*LANDCOVER_PALETTE, LANDCOVER_UNKNOWN_RGB)  # unknown: index LANDCOVER_N_CLASS here
    counts = np.zeros(256, dtype=np.int64)
    for name in names:
        with Image.open(masks_dir / f"{name}.png") as file:
            rgb = np.asarray(file.convert("RGB"))
        counts += np.bincount(binary_colours_to_index(rgb, with_unknown).reshape(-1), minlength=256)
    total = max(1, int(counts.sum()))
    fractions = {c: round(int(counts[i]) / total, 5) for i, c in enumerate(LANDCOVER_CLASSES)}
    fractions["unknown"] = round(int(counts[LANDCOVER_N_CLASS]) / total, 5)
    fractions["other"] = round(int(counts[IGNORE_INDEX]) / total, 5)
    return fractions


# --- the whole preparation ---------------------------------------------------------------


def _missing_archive_message(archives_dir: Path) -> str:
    return (
        f"none of {', '.join(ARCHIVES)} is in {archives_dir}. The DeepGlobe Land Cover data needs an account and "
        f"cannot be downloaded automatically: get {CHALLENGE_ARCHIVE} from the challenge ({HOMEPAGE}) or the "
        f"Kaggle mirror ({KAGGLE_PAGE}), put it into {archives_dir} (or pass its folder with --archives) and "
        "run this again. Pairs already unpacked: --from-unpacked FOLDER."
    )


def find_archive(archives_dir: Path) -> Path:
    """The first of ``ARCHIVES`` in ``archives_dir``. Raises FileNotFoundError (saying how to get one)."""
    for name in ARCHIVES:
        if (archives_dir / name).is_file():
            return archives_dir / name
    raise FileNotFoundError(_missing_archive_message(archives_dir))


def prepare_landcover(
    root: str | os.PathLike,
    archives_dir: str | os.PathLike | None = None,
    *,
    unpacked_dir: str | os.PathLike | None = None,
    size: int = DEFAULT_SIZE,
    progress: bool = True,
) -> Path:
    """Prepare ``<root>/landcover`` (see the module docstring for the layout).

    Inputs:
        root: data root (the folder ``$SEGKIT_DATA`` points at).
        archives_dir: folder holding the downloaded archive (default ``<root>/downloads/landcover``).
        unpacked_dir: folder with the pairs already unpacked; skips the archive.
        size: longer side of the prepared images and masks (0: keep 2448).
        progress: show a progress bar.
    Returns:
        Path of ``<root>/landcover``.
    """
    root = Path(root)
    out_dir = root / DATASET
    source: dict[str, str] = {}
    if unpacked_dir is None:
        archive = find_archive(Path(archives_dir) if archives_dir is not None else root / "downloads" / DATASET)
        source = {"archive": archive.name, "sha256": verify_manual_archive(archive)}
        unpacked_dir = extract(archive, root / "downloads" / f"{DATASET}_unpacked")
    pairs = find_pairs(unpacked_dir)
    if not pairs:
        raise FileNotFoundError(f"no <id>_sat.jpg + <id>_mask.png pairs under {unpacked_dir}")
    meta_file = out_dir / "meta.json"
    if meta_file.is_file() and json.loads(meta_file.read_text()).get("size") != size:
        raise ValueError(
            f"{out_dir} was prepared with another --size ({json.loads(meta_file.read_text()).get('size')}); "
            f"delete {out_dir} to prepare it again with --size {size}"
        )
    for sub in ("images", "masks", "splits"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for name in tqdm(list(pairs), desc="landcover pairs", disable=not progress, leave=False):
        prepare_pair(name, *pairs[name], out_dir, size)

    splits = split_names(list(pairs))
    write_splits_and_meta(
        out_dir,
        splits,
        {
            "dataset": DATASET,
            "classes": list(LANDCOVER_CLASSES),
            "palette": [list(colour) for colour in LANDCOVER_PALETTE],
            "n_class": LANDCOVER_N_CLASS,
            "ignore_index": IGNORE_INDEX,
            "mask_encoding": "rgb",
            "mask_values": f"RGB colours of the palette (class i = palette[i]); {list(LANDCOVER_UNKNOWN_RGB)} = unknown "
            "(not scored: ignored); every channel snapped to 0/255 at 128",
            "size": size,
            "class_fraction": class_fractions(out_dir / "masks", list(pairs)),
            "split_rule": "ids sorted; first round(0.8 n) train, next round(0.1 n) val, rest test "
            "(642/80/81 of the 803 labelled images)",
            "source": source or {"unpacked": str(unpacked_dir)},
            "licence": ENTRY.licence,
            "citation": ENTRY.citation,
            "homepage": ENTRY.homepage,
        },
    )
    return out_dir


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=None, help="data root (default: $SEGKIT_DATA or ~/segkit-data)")
    parser.add_argument(
        "--archives",
        type=Path,
        default=None,
        help=f"folder holding {' or '.join(ARCHIVES)} (default ROOT/downloads/landcover)",
    )
    parser.add_argument("--from-unpacked", type=Path, default=None, metavar="DIR", help="pairs already unpacked here")
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SIZE, help="longer side of the prepared pairs (0: full 2448)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    root = args.root
    if root is None:
        from starter.common import data_root

        root = data_root()
    try:
        out_dir = prepare_landcover(
            root, args.archives, unpacked_dir=args.from_unpacked, size=args.size, progress=not args.no_progress
        )
    except (FileNotFoundError, DownloadError, ValueError) as error:  # a message, not a traceback
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    counts = json.loads((out_dir / "meta.json").read_text())["counts"]
    print(f"DeepGlobe Land Cover ready in {out_dir}: {counts}")
    return out_dir


if __name__ == "__main__":
    main()
