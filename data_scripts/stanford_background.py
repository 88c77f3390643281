"""Download and prepare the Stanford Background Dataset for the U-Net assignment.

    python -m data_scripts.stanford_background --root DIR                    # download + prepare
    python -m data_scripts.stanford_background --root DIR --archives FOLDER  # iccv09Data.tar.gz already there
    python -m data_scripts.stanford_background --root DIR --from-unpacked UNPACKED  # folder holding iccv09Data/

The official archive ``iccv09Data.tar.gz`` (registry entry ``stanford_background``) unpacks to
``iccv09Data/images/<name>.jpg`` (about 320x240) and ``iccv09Data/labels/<name>.regions.txt``:
one integer per pixel, space-separated rows, 0..7 = sky, tree, road, grass, water, building,
mountain, foreground, and -1 = unknown. The download is verified with a SHA-256 checksum (the
registry's published value, or trust on first use, see ``data_scripts.download``).

Result, ``DIR/stanford_background/``::

    images/<name>.jpg     the official photographs, copied
    masks/<name>.png      single-channel PNG: 0..7 as in the dataset, 8 = misc (-1 unknown), 255 = other
    splits/{train,val,test}.txt
    meta.json             classes, counts, split rule, source, licence

Split rule (``split_names``): names sorted; the first ``round(0.8 n)`` train, the next
``round(0.1 n)`` validation, the rest test (halves round up). For the 715 official images this is
572 / 72 / 71. Re-running is safe: finished pairs are skipped and every file is written under a
temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from data_scripts.download import REGISTRY, ChecksumError, DownloadError, RemoteFile, download, extract
from data_scripts.prepare import prepare_pair, write_splits_and_meta
from starter.constants import IGNORE_INDEX, SBD_CLASSES, SBD_N_CLASS, SBD_SPLIT_FRACTIONS

DATASET = "stanford_background"
TOP_FOLDER = "iccv09Data"
SPLIT_FRACTIONS = SBD_SPLIT_FRACTIONS  # train, val; the rest is test (572 / 72 / 71 of 715)
MISC_CLASS = SBD_N_CLASS - 1  # "misc": where the dataset says -1 (unknown)
_REGIONS_SUFFIX = ".regions.txt"


def split_names(names: Sequence[str], fractions: tuple[float, float] = SPLIT_FRACTIONS) -> dict[str, list[str]]:
    """Apply the split rule: sort; first round(0.8 n) train, next round(0.1 n) val, the rest test.

    Inputs:
        names: sample names (any order, no duplicates).
        fractions: (train, val) fractions; halves round up.
    Returns:
        {"train": [...], "val": [...], "test": [...]}; for 715 names 572 / 72 / 71.
    """
    ordered = sorted(names)
    if len(set(ordered)) != len(ordered):
        raise ValueError("duplicate sample names; each name must appear once")
    n = len(ordered)
    n_train = math.floor(fractions[0] * n + 0.5)
    n_val = math.floor(fractions[1] * n + 0.5)
    return {
        "train": ordered[:n_train],
        "val": ordered[n_train : n_train + n_val],
        "test": ordered[n_train + n_val :],
    }


def read_regions(path: str | os.PathLike) -> np.ndarray:
    """Read a ``*.regions.txt`` label file and map it to kit class indices.

    Inputs:
        path: text file, one row of space-separated integers per image row.
    Returns:
        uint8 (H, W): 0..7 unchanged, -1 -> 8 (misc), any other value -> IGNORE_INDEX.
    """
    rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if not rows or len({len(row) for row in rows}) != 1:
        raise ValueError(f"{path}: expected rows of equal length of integers")
    values = np.array(rows, dtype=np.int64)
    mask = np.full(values.shape, IGNORE_INDEX, dtype=np.uint8)
    known = (values >= 0) & (values < MISC_CLASS)
    mask[known] = values[known]
    mask[values == -1] = MISC_CLASS
    return mask


def find_pairs(unpacked_dir: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """Find image/label pairs under ``unpacked_dir`` (the folder holding ``iccv09Data/``, or that folder).

    Returns:
        {name: (jpg path, regions.txt path)} for every image with a label file.
    """
    folder = Path(unpacked_dir)
    for candidate in (folder / TOP_FOLDER, folder):
        if (candidate / "images").is_dir() and (candidate / "labels").is_dir():
            images, labels = candidate / "images", candidate / "labels"
            break
    else:
        raise FileNotFoundError(f"{folder} holds no {TOP_FOLDER}/images and {TOP_FOLDER}/labels folders")
    pairs = {}
    for image_path in sorted(images.glob("*.jpg")):
        label_path = labels / f"{image_path.stem}{_REGIONS_SUFFIX}"
        if label_path.is_file() and not image_path.name.startswith("."):
            pairs[image_path.stem] = (image_path, label_path)
    return pairs


def fetch_and_extract(
    root: Path, archives_dir: Path | None = None, *, remote: RemoteFile | None = None, progress: bool = True
) -> Path:
    """Download (unless already in ``archives_dir``, verified) and unpack the official archive.

    Returns:
        Folder holding the unpacked ``iccv09Data/``.
    """
    remote = remote or REGISTRY[DATASET].files[0]
    archives_dir = archives_dir or root / "downloads" / DATASET
    unpack_dir = root / "downloads" / f"{DATASET}_unpacked"
    try:
        archive = download(remote, archives_dir, progress=progress)
    except ChecksumError:
        raise  # the message already says what happened and that re-running fetches it again
    except DownloadError as error:
        raise DownloadError(
            f"could not get {remote.filename} ({error}). Download it by hand from {remote.url} into a "
            "folder and re-run with --archives FOLDER"
        ) from error
    extract(archive, unpack_dir)
    return unpack_dir


def prepare_stanford_background(
    root: str | os.PathLike,
    *,
    archives_dir: str | os.PathLike | None = None,
    unpacked_dir: str | os.PathLike | None = None,
    remote: RemoteFile | None = None,
    progress: bool = True,
) -> Path:
    """Prepare ``<root>/stanford_background`` (see the module docstring for the layout).

    Inputs:
        root: data root (the folder ``$SEGKIT_DATA`` points at).
        archives_dir: folder with (or to receive) ``iccv09Data.tar.gz``; default ``<root>/downloads/stanford_background``.
        unpacked_dir: folder holding an already unpacked ``iccv09Data/``; skips downloading.
        remote: the file to download (default: the registry's); tests point it at a local server.
        progress: show progress bars.
    Returns:
        Path of the prepared folder.
    """
    root = Path(root)
    if unpacked_dir is None:
        unpacked_dir = fetch_and_extract(
            root, Path(archives_dir) if archives_dir else None, remote=remote, progress=progress
        )
    pairs = find_pairs(unpacked_dir)
    if not pairs:
        raise FileNotFoundError(f"no image/label pairs (images/*.jpg + labels/*.regions.txt) under {unpacked_dir}")
    out_dir = root / DATASET
    for sub in ("images", "masks", "splits"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for name in tqdm(sorted(pairs), desc="stanford_background pairs", disable=not progress, leave=False):
        image_src, label_src = pairs[name]
        prepare_pair(name, image_src, lambda label_src=label_src: read_regions(label_src), out_dir)

    splits = split_names(list(pairs))
    entry = REGISTRY[DATASET]
    write_splits_and_meta(
        out_dir,
        splits,
        {
            "dataset": DATASET,
            "classes": list(SBD_CLASSES),
            "n_class": SBD_N_CLASS,
            "ignore_index": IGNORE_INDEX,
            "mask_values": "0..7 as in labels/*.regions.txt; 8 = misc (the dataset's -1, unknown); 255 = other",
            "split_rule": "names sorted; first round(0.8 n) train, next round(0.1 n) val, rest test "
            "(572/72/71 of the 715 official images)",
            "licence": entry.licence,
            "citation": entry.citation,
            "homepage": entry.homepage,
        },
    )
    return out_dir


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", type=Path, default=None, help="data root (default: $SEGKIT_DATA or ~/segkit-data)")
    parser.add_argument("--archives", type=Path, default=None, help="folder holding (or receiving) iccv09Data.tar.gz")
    parser.add_argument(
        "--from-unpacked",
        type=Path,
        default=None,
        metavar="DIR",
        help="prepare from a folder holding an unpacked iccv09Data/; no download",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    root = args.root
    if root is None:
        from starter.common import data_root

        root = data_root()
    out_dir = prepare_stanford_background(
        root,
        archives_dir=args.archives,
        unpacked_dir=args.from_unpacked,
        progress=not args.no_progress,
    )
    counts = json.loads((out_dir / "meta.json").read_text())["counts"]
    print(f"Stanford Background ready in {out_dir}: {counts}")
    return out_dir


if __name__ == "__main__":
    main()
