"""Download and prepare the CMP Facade database for ``starter.data.CMPFacade``.

    python -m data_scripts.cmp_facade --root DIR                   # download + prepare
    python -m data_scripts.cmp_facade --root DIR --archives ZIPS   # zips already downloaded
    python -m data_scripts.cmp_facade --root DIR --from-unpacked UNPACKED [UNPACKED ...]

Result, ``DIR/cmp_facade/``::

    images/<name>.jpg     the official photographs, copied
    masks/<name>.png      single-channel PNG, 0..11 = CMP_CLASSES, 255 = unlabelled
    splits/{train,val,test}.txt
    objects/<name>.xml    the official object rectangles, copied
    instances/{train,val,test}.json   instance annotations, COCO "instances" layout (below)
    meta.json             classes, counts, source, licence (written last: the "ready" marker)

The official masks are palette ("P") PNGs storing 1..12; the kit stores value - 1, and any
other value (0, > 12) becomes IGNORE_INDEX. Names over base + extended are sorted; the first
500 are train, the next 30 val, the rest test (``CMP_SPLIT_SIZES``). With the base set alone
(378 pairs, e.g. when the extended zip cannot be had) that rule would leave no val/test images, so
base-only data is split 288 / 30 / 60 by sorted name instead (``CMP_BASE_ONLY_SPLIT_SIZES``), and
``meta.json`` says which rule was applied.

Instance annotations. Every official image comes with ``cmp_bNNNN.xml``, the rectangles of its
windows, doors, balconies, ... (label id and corners as fractions of the image size). An instance of
a class of ``CMP_INSTANCE_CLASSES`` (window, door, balcony, shop) is the set of that class's pixels
in the label mask inside its rectangle; the rectangle spans the pixel columns ``round(x1 * W)`` to
``round(x2 * W) - 1`` and the rows ``round(y1 * H)`` to ``round(y2 * H) - 1`` (clipped to the image).
Empty rectangles and instances without a pixel of their class (e.g. a window hidden behind a blind)
are left out. ``instances/<split>.json`` holds them in COCO's layout, readable by pycocotools'
``COCO`` and ``COCOeval(..., "segm")``: category id k = 1 + the class's position in
``CMP_INSTANCE_CLASSES``; per annotation ``bbox`` [x, y, w, h] tight around the mask (pixels),
``area`` (pixels), ``segmentation`` as compressed RLE (``starter.instance.rle_decode`` or
``pycocotools.mask.decode``), ``rectangle`` the XML rectangle in pixels and ``iscrowd`` 0. Images
without an XML file get no annotation (a warning counts them).

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
from starter.common import write_atomic, write_atomically
from starter.constants import (
    CMP_BASE_ONLY_SPLIT_SIZES,
    CMP_CLASSES,
    CMP_INSTANCE_CLASSES,
    CMP_N_CLASS,
    CMP_SPLIT_SIZES,
    IGNORE_INDEX,
)
from starter.instance import INSTANCES_DIR, OBJECTS_DIR, parse_cmp_objects, rle_encode_crop

DATASET = "cmp_facade"
# Bumped when the instance annotations change: a re-run rewrites files of an older version.
INSTANCE_FORMAT_VERSION = 1
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


def _meta(sources: dict[str, int], sizes: tuple[int, int], dataset: str, instances: dict[str, int]) -> dict:
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
            "files": f"{INSTANCES_DIR}/<split>.json (COCO instances layout, compressed RLE masks)",
            "counts": instances,
            "format_version": INSTANCE_FORMAT_VERSION,
        },
        "licence": entry.licence,
        "citation": entry.citation,
        "homepage": entry.homepage,
    }


def pixel_rectangle(box: Sequence[float], height: int, width: int) -> tuple[int, int, int, int]:
    """The pixels an XML rectangle covers.

    Inputs:
        box: (x1, y1, x2, y2) as fractions of the image width/height (x1 <= x2, y1 <= y2).
        height, width: the image size.
    Returns:
        (top, left, bottom, right): rows top..bottom-1 and columns left..right-1, clipped to the
        image; empty when bottom <= top or right <= left.
    """
    # np.rint rounds halves to even, as Python's round does
    edges = np.rint(np.asarray(box, dtype=np.float64) * np.array([width, height, width, height]))
    left, top, right, bottom = np.clip(edges, 0, [width, height, width, height]).astype(int).tolist()
    return top, left, bottom, right


def instance_annotations(
    objects: Sequence[dict], label_mask: np.ndarray, classes: Sequence[str] = CMP_INSTANCE_CLASSES
) -> list[dict]:
    """COCO annotations (without ids) of one image's instances.

    Inputs:
        objects: ``starter.instance.parse_cmp_objects`` of the image's XML (labels = kit class indices).
        label_mask: uint8 (H, W) kit class indices (0..11, 255 = unlabelled).
        classes: instance class names; category id = 1 + position.
    Returns:
        [{"category_id", "bbox" [x, y, w, h], "area", "segmentation" (compressed RLE),
          "rectangle" [left, top, right, bottom], "iscrowd": 0}, ...] in the order of ``objects``,
        empty rectangles and instances without a pixel of their class left out.
    """
    image_size = label_mask.shape
    category = {CMP_CLASSES.index(name): position + 1 for position, name in enumerate(classes)}
    annotations = []
    for item in objects:
        if item["label"] not in category:
            continue
        top, left, bottom, right = pixel_rectangle(item["box"], *image_size)
        if bottom <= top or right <= left:
            continue
        inside = label_mask[top:bottom, left:right] == item["label"]
        rows, cols = np.nonzero(inside)
        if rows.size == 0:
            continue
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        crop = inside[y0:y1, x0:x1]
        annotations.append(
            {
                "category_id": category[item["label"]],
                "bbox": [int(left + x0), int(top + y0), int(x1 - x0), int(y1 - y0)],
                "area": int(rows.size),
                "segmentation": rle_encode_crop(crop, int(top + y0), int(left + x0), *image_size),
                "rectangle": [left, top, right, bottom],
                "iscrowd": 0,
            }
        )
    return annotations


def _copy_objects(name: str, xml_src: Path | None, out_dir: Path) -> Path | None:
    """``objects/<name>.xml``, copied from the official file once. Returns: its path, None without one."""
    if xml_src is None:
        return None
    destination = out_dir / OBJECTS_DIR / f"{name}.xml"
    if not destination.is_file():
        write_atomically(destination, lambda temporary: shutil.copyfile(xml_src, temporary))
    return destination


def _split_is_current(path: Path, names: list[str]) -> bool:
    if not path.is_file():
        return False
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return False
    info = existing.get("info", {})
    return info.get("format_version") == INSTANCE_FORMAT_VERSION and [i["name"] for i in existing["images"]] == names


def write_instances(
    out_dir: Path,
    splits: dict[str, list[str]],
    xml_sources: dict[str, Path | None],
    *,
    progress: bool = True,
) -> dict[str, int]:
    """Write ``objects/<name>.xml`` and ``instances/<split>.json`` (a split already written for the
    same images by this version is kept). Reads the prepared ``masks/``.

    Returns:
        {split: number of instances}.
    """
    (out_dir / OBJECTS_DIR).mkdir(parents=True, exist_ok=True)
    (out_dir / INSTANCES_DIR).mkdir(parents=True, exist_ok=True)
    image_ids = {name: number for number, name in enumerate(sorted(xml_sources), start=1)}
    categories = [
        {"id": position + 1, "name": name, "supercategory": "facade", "cmp_class": CMP_CLASSES.index(name)}
        for position, name in enumerate(CMP_INSTANCE_CLASSES)
    ]
    counts, without_xml = {}, 0
    for split, names in splits.items():
        path = out_dir / INSTANCES_DIR / f"{split}.json"
        objects_paths = {name: _copy_objects(name, xml_sources.get(name), out_dir) for name in names}
        without_xml += sum(p is None for p in objects_paths.values())
        if _split_is_current(path, names):
            counts[split] = len(json.loads(path.read_text(encoding="utf-8"))["annotations"])
            continue
        images, annotations = [], []
        for name in tqdm(names, desc=f"instances {split}", disable=not progress, leave=False):
            with Image.open(out_dir / "masks" / f"{name}.png") as mask_file:
                label_mask = np.asarray(mask_file)
            images.append(
                {
                    "id": image_ids[name],
                    "file_name": f"images/{name}.jpg",
                    "name": name,
                    "height": label_mask.shape[0],
                    "width": label_mask.shape[1],
                }
            )
            objects = parse_cmp_objects(objects_paths[name]) if objects_paths[name] is not None else []
            for annotation in instance_annotations(objects, label_mask):
                annotations.append({"id": len(annotations) + 1, "image_id": image_ids[name], **annotation})
        coco = {
            "info": {
                "description": f"CMP Facade instances ({split}): {', '.join(CMP_INSTANCE_CLASSES)}",
                "format_version": INSTANCE_FORMAT_VERSION,
                "rule": "instance = pixels of the class inside its XML rectangle; bbox tight, [x, y, w, h]",
            },
            "licenses": [],
            "categories": categories,
            "images": images,
            "annotations": annotations,
        }
        write_atomic(path, json.dumps(coco, separators=(",", ":")) + "\n")
        counts[split] = len(annotations)
    if without_xml:
        print(
            f"warning: {without_xml} images have no XML object file: no instance annotations for them", file=sys.stderr
        )
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
    instances = write_instances(out_dir, splits, xml_sources, progress=progress)
    write_splits_and_meta(out_dir, splits, _meta(sources, sizes, dataset, instances))
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
