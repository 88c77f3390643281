"""Download and prepare the CMP Facade database for ``starter.data.CMPFacade``.

    python -m data_scripts.cmp_facade --root DIR                   # download + prepare
    python -m data_scripts.cmp_facade --root DIR --archives ZIPS   # zips already downloaded
    python -m data_scripts.cmp_facade --root DIR --from-unpacked UNPACKED [UNPACKED ...]

Result, ``DIR/cmp_facade/``::

    images/<name>.jpg     the official photographs, copied
    masks/<name>.png      single-channel PNG, 0..11 = CMP_CLASSES, 255 = unlabelled
    splits/{train,val,test}.txt
    objects/<name>.xml    the official object rectangles, copied (instances: below)
    meta.json             classes, counts, source, licence (written last: the "ready" marker)

The official masks are palette ("P") PNGs storing 1..12; the kit stores value - 1, and any
other value (0, > 12) becomes IGNORE_INDEX. Names over base + extended are sorted; the first
500 are train, the next 30 val, the rest test (``CMP_SPLIT_SIZES``). With the base set alone
(378 pairs, e.g. when the extended zip cannot be had) that rule would leave no val/test images, so
base-only data is split 288 / 30 / 60 by sorted name instead (``CMP_BASE_ONLY_SPLIT_SIZES``), and
``meta.json`` says which rule was applied.

Instance annotations. Every official image comes with ``cmp_bNNNN.xml``, the rectangles of its
windows, doors, balconies, ... (label id and corners as fractions of the image size). This script only
copies them to ``objects/``: turning rectangles and label masks into instances is a graded exercise
of the instance notebook (``instance_targets``), so no code shipped to students implements that rule.
The notebook writes ``instances/<split>.json`` (COCO's "instances" layout) with the student's own
function, through ``starter.instance.write_instance_annotations``. Images without an XML file get no
object file (a warning counts them).

Re-running is safe: finished pairs are skipped, every file is written under a temporary
name and renamed into place, and the split/meta files are rewritten atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from data_scripts.download import REGISTRY, DownloadError, download, extract
from data_scripts.prepare import prepare_pair, write_splits_and_meta
from starter.common import write_atomically
from starter.constants import (
    CMP_BASE_ONLY_SPLIT_SIZES,
    CMP_CLASSES,
    CMP_INSTANCE_CLASSES,
    CMP_N_CLASS,
    CMP_OBJECTS_DIR,
    CMP_SPLIT_SIZES,
    IGNORE_INDEX,
)

DATASET = "cmp_facade"
OBJECTS_DIR = CMP_OBJECTS_DIR
# The extended set only adds images; without it the kit still works on base (with a warning).
OPTIONAL_ARCHIVES = frozenset({"CMP_facade_DB_extended.zip"})
# Official names: cmp_b0001 (base), cmp_x0001 (extended).
_PAIR_NAME = re.compile(r"^cmp_[bx]\d+$")

# Lookup table official PNG value -> kit class index: 1..12 -> 0..11, anything else -> 255.
_OFFICIAL_TO_INDEX = np.full(256, IGNORE_INDEX, dtype=np.uint8)
_OFFICIAL_TO_INDEX[1 : CMP_N_CLASS + 1] = np.arange(CMP_N_CLASS, dtype=np.uint8)


def split_names(names: Sequence[str], sizes: tuple[int, int] | None = None) -> dict[str, list[str]]:
    """Apply the split rule: sort, first ``sizes[0]`` train, next ``sizes[1]`` val, rest test.

    Inputs:
        names: sample names (any order, no duplicates).
        sizes: (n_train, n_val); default ``CMP_SPLIT_SIZES``.
    Returns:
        {"train": [...], "val": [...], "test": [...]} (possibly empty lists when few names exist).
    """
    n_train, n_val = sizes if sizes is not None else CMP_SPLIT_SIZES
    ordered = sorted(names)
    if len(set(ordered)) != len(ordered):
        raise ValueError("duplicate sample names; each name must appear once")
    return {
        "train": ordered[:n_train],
        "val": ordered[n_train : n_train + n_val],
        "test": ordered[n_train + n_val :],
    }


def official_mask_to_index(mask_png: Path) -> np.ndarray:
    """Read an official mask and map it to kit class indices.

    Inputs:
        mask_png: palette ("P") or grey ("L") PNG storing 1..12.
    Returns:
        uint8 (H, W) with 0..11 or IGNORE_INDEX.
    """
    with Image.open(mask_png) as mask_file:
        if mask_file.mode not in ("P", "L"):
            raise ValueError(f"{mask_png}: expected a palette/grey index PNG, got mode {mask_file.mode!r}")
        # For "P" images np.asarray gives the palette indices, i.e. the stored label values.
        official = np.asarray(mask_file)
    return _OFFICIAL_TO_INDEX[official]


def find_pairs(unpacked_dirs: Sequence[str | os.PathLike]) -> dict[str, tuple[Path, Path]]:
    """Find official image/mask pairs under the given folders (searched recursively).

    Returns:
        {name: (jpg path, png path)} for every ``cmp_[bx]NNNN.jpg`` with a matching ``.png``.
    """
    pairs: dict[str, tuple[Path, Path]] = {}
    for folder in map(Path, unpacked_dirs):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder; pass the folder that holds base/ or extended/")
        for image_path in sorted(folder.rglob("cmp_*.jpg")):
            if any(part.startswith(".") for part in image_path.relative_to(folder).parts):
                continue  # staging folders of an unfinished extraction
            mask_path = image_path.with_suffix(".png")
            if _PAIR_NAME.match(image_path.stem) and mask_path.is_file():
                pairs.setdefault(image_path.stem, (image_path, mask_path))
    return pairs


def fetch_and_extract(root: Path, archives_dir: Path | None = None, *, progress: bool = True) -> Path:
    """Download (unless present in ``archives_dir``) and unpack the official archives.

    Returns:
        Folder holding the unpacked ``base/`` (and ``extended/`` when available).
    """
    archives_dir = archives_dir or root / "downloads" / DATASET
    unpack_dir = root / "downloads" / f"{DATASET}_unpacked"
    for remote in REGISTRY[DATASET].files:
        try:
            archive = download(remote, archives_dir, progress=progress)
        except (DownloadError, OSError) as error:
            if remote.filename not in OPTIONAL_ARCHIVES:
                raise DownloadError(
                    f"could not get {remote.filename} ({error}). Download it by hand from "
                    f"{remote.url} into a folder and re-run with --archives FOLDER"
                ) from error
            print(f"warning: skipping optional {remote.filename}: {error}", file=sys.stderr)
            continue
        extract(archive, unpack_dir)
    return unpack_dir


def split_sizes_for(names: Sequence[str]) -> tuple[int, int]:
    """Returns: (n_train, n_val) of the rule that applies: base-only data gets its own split."""
    has_extended = any(name.startswith("cmp_x") for name in names)
    return CMP_SPLIT_SIZES if has_extended else CMP_BASE_ONLY_SPLIT_SIZES


def _meta(sources: dict[str, int], sizes: tuple[int, int], dataset: str, objects: dict[str, int]) -> dict:
    entry = REGISTRY[DATASET]
    rule = "base + extended" if sizes == CMP_SPLIT_SIZES else "base only"
    return {
        "dataset": dataset,
        "classes": list(CMP_CLASSES),
        "n_class": CMP_N_CLASS,
        "ignore_index": IGNORE_INDEX,
        "mask_values": "0..11 = classes (official PNG value - 1); 255 = unlabelled",
        "source": sources,
        "split_rule": f"{rule}: names sorted; first {sizes[0]} train, next {sizes[1]} val, rest test",
        "instances": {
            "classes": list(CMP_INSTANCE_CLASSES),
            "files": f"{OBJECTS_DIR}/<name>.xml: the official object rectangles; the instance notebook derives "
            "instances/<split>.json from them with the student's instance_targets",
            "images_with_objects": objects,
        },
        "licence": entry.licence,
        "citation": entry.citation,
        "homepage": entry.homepage,
    }


def _copy_objects(name: str, xml_src: Path | None, out_dir: Path) -> Path | None:
    """``objects/<name>.xml``, copied from the official file once. Returns: its path, None without one."""
    if xml_src is None:
        return None
    destination = out_dir / OBJECTS_DIR / f"{name}.xml"
    if not destination.is_file():
        write_atomically(destination, lambda temporary: shutil.copyfile(xml_src, temporary))
    return destination


def copy_object_files(
    out_dir: Path, splits: dict[str, list[str]], xml_sources: dict[str, Path | None]
) -> dict[str, int]:
    """Copy the official XML of every image into ``objects/`` (a copy already there is kept).

    Returns:
        {split: number of images with an object file}.
    """
    (out_dir / OBJECTS_DIR).mkdir(parents=True, exist_ok=True)
    counts, without_xml = {}, 0
    for split, names in splits.items():
        copied = [_copy_objects(name, xml_sources.get(name), out_dir) for name in names]
        counts[split] = sum(path is not None for path in copied)
        without_xml += len(names) - counts[split]
    if without_xml:
        print(f"warning: {without_xml} images have no XML object file: no instances for them", file=sys.stderr)
    return counts


def prepare_cmp_facade(
    root: str | os.PathLike,
    *,
    archives_dir: str | os.PathLike | None = None,
    unpacked_dirs: Sequence[str | os.PathLike] | None = None,
    progress: bool = True,
    dataset: str = DATASET,
    split_sizes: tuple[int, int] | None = None,
) -> Path:
    """Prepare ``<root>/cmp_facade`` (see the module docstring for the layout).

    Inputs:
        root: data root (the folder ``$SEGKIT_DATA`` points at).
        archives_dir: folder with (or to receive) the official zips; default ``<root>/downloads/cmp_facade``.
        unpacked_dirs: folders with already unpacked ``base/``/``extended/`` data; skips downloading.
        progress: show progress bars.
        dataset: the output folder's name under ``root`` (another name for data in the official
            layout that is not CMP's, e.g. the synthetic facades of ``data_scripts.synthetic_facades``).
        split_sizes: (n_train, n_val) instead of the split rule (``split_sizes_for``).
    Returns:
        Path of the prepared ``<root>/<dataset>`` folder.
    """
    root = Path(root)
    if unpacked_dirs is None:
        unpacked_dirs = [fetch_and_extract(root, Path(archives_dir) if archives_dir else None, progress=progress)]
    pairs = find_pairs(unpacked_dirs)
    if not pairs:
        raise FileNotFoundError(
            f"no CMP Facade pairs (cmp_bNNNN.jpg + .png) found under {[str(d) for d in unpacked_dirs]}"
        )
    out_dir = root / dataset
    for sub in ("images", "masks", "splits"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)

    for name in tqdm(sorted(pairs), desc=f"{dataset} pairs", disable=not progress, leave=False):
        image_src, mask_src = pairs[name]
        prepare_pair(name, image_src, lambda mask_src=mask_src: official_mask_to_index(mask_src), out_dir)

    sizes = split_sizes if split_sizes is not None else split_sizes_for(list(pairs))
    splits = split_names(list(pairs), sizes)
    sources = {
        "base": sum(name.startswith("cmp_b") for name in pairs),
        "extended": sum(name.startswith("cmp_x") for name in pairs),
    }
    if sources["extended"] == 0 and split_sizes is None:
        print(
            f"warning: only the base set ({sources['base']} pairs) is available; it is split by the "
            f"base-only rule (first {sizes[0]} train, next {sizes[1]} val, rest test): "
            f"{len(splits['train'])}/{len(splits['val'])}/{len(splits['test'])} train/val/test. "
            "Add CMP_facade_DB_extended.zip and re-run for the course's split.",
            file=sys.stderr,
        )
    xml_sources = {name: _xml_next_to(pairs[name][0]) for name in pairs}
    objects = copy_object_files(out_dir, splits, xml_sources)
    write_splits_and_meta(out_dir, splits, _meta(sources, sizes, dataset, objects))
    return out_dir


def _xml_next_to(image_path: Path) -> Path | None:
    xml = image_path.with_suffix(".xml")
    return xml if xml.is_file() else None


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", type=Path, default=None, help="data root (default: $SEGKIT_DATA or ~/segkit-data)")
    parser.add_argument("--archives", type=Path, default=None, help="folder holding (or receiving) the official zips")
    parser.add_argument(
        "--from-unpacked",
        type=Path,
        nargs="+",
        default=None,
        metavar="DIR",
        help="prepare from already unpacked folders (holding base/, extended/); no download",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    root = args.root
    if root is None:
        from starter.common import data_root

        root = data_root()
    out_dir = prepare_cmp_facade(
        root,
        archives_dir=args.archives,
        unpacked_dirs=args.from_unpacked,
        progress=not args.no_progress,
    )
    counts = json.loads((out_dir / "meta.json").read_text())["counts"]
    print(f"CMP Facade ready in {out_dir}: {counts}")
    return out_dir


if __name__ == "__main__":
    main()
