"""Write the synthetic shapes dataset to disk as a plain image/mask folder.

    python -m data_scripts.synthetic --root DIR --n 40 --n-class 12 --size 128 160 --seed 0

writes ``DIR/synthetic/`` (readable with ``starter.data.FolderSegmentation``)::

    images/synth_00000.png ...   RGB
    masks/synth_00000.png ...    single channel, 0..n_class-1 (255 = ignore border, if any)
    splits/{train,val,test}.txt  80/10/10 (at least one val and one test sample when n >= 3)
    meta.json                    classes, n_class, generator settings

The pixels come from ``starter.synthetic.SyntheticScenes``, the generator behind the in-memory
``starter.data.SyntheticSegmentation`` too (NumPy only, so this script never loads torch), so the
same arguments always give identical files.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from starter.common import write_atomically
from starter.synthetic import SyntheticScenes

FOLDER = "synthetic"


def synthetic_splits(n: int) -> dict[str, range]:
    """Indices of train/val/test: last ~10% test, the ~10% before val, the rest train.

    Returns:
        {"train": range, "val": range, "test": range} covering 0..n-1 once.
    """
    n_holdout = max(1, round(0.1 * n)) if n >= 3 else 0
    n_train = n - 2 * n_holdout
    return {
        "train": range(0, n_train),
        "val": range(n_train, n_train + n_holdout),
        "test": range(n_train + n_holdout, n),
    }


def sample_name(index: int) -> str:
    return f"synth_{index:05d}"


def _save_png_atomically(array, path: Path) -> None:
    write_atomically(path, lambda temporary: Image.fromarray(array).save(temporary, format="PNG"))


def write_synthetic(
    root: str | os.PathLike,
    *,
    n: int = 40,
    n_class: int = 12,
    size: Sequence[int] = (128, 160),
    seed: int = 0,
    ignore_border: int = 0,
) -> Path:
    """Write ``n`` samples of ``SyntheticScenes`` into ``<root>/synthetic``.

    Inputs:
        root: data root; n, n_class, size (H, W), seed, ignore_border: as for SyntheticScenes.
    Returns:
        Path of the written folder.
    """
    dataset = SyntheticScenes(n, n_class, tuple(size), seed=seed, ignore_border=ignore_border)
    out_dir = Path(root) / FOLDER
    for sub in ("images", "masks", "splits"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for index in range(n):
        image, mask = dataset.generate(index)
        _save_png_atomically(image, out_dir / "images" / f"{sample_name(index)}.png")
        _save_png_atomically(mask, out_dir / "masks" / f"{sample_name(index)}.png")
    for split, indices in synthetic_splits(n).items():
        (out_dir / "splits" / f"{split}.txt").write_text("".join(f"{sample_name(i)}\n" for i in indices))
    meta = {
        "dataset": FOLDER,
        "classes": list(dataset.classes),
        "n_class": n_class,
        "palette": [list(colour) for colour in dataset.palette],
        "generator": {"n": n, "size": list(dataset.size), "seed": seed, "ignore_border": ignore_border},
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Write the synthetic shapes segmentation dataset to disk.")
    parser.add_argument("--root", type=Path, required=True, help="data root; files go to ROOT/synthetic")
    parser.add_argument("--n", type=int, default=40, help="number of samples")
    parser.add_argument("--n-class", type=int, default=12, help="classes including background 0")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 160), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ignore-border", type=int, default=0, help="width of a 255 (ignore) frame")
    args = parser.parse_args(argv)
    out_dir = write_synthetic(
        args.root,
        n=args.n,
        n_class=args.n_class,
        size=args.size,
        seed=args.seed,
        ignore_border=args.ignore_border,
    )
    print(f"wrote {args.n} samples to {out_dir}")
    return out_dir


if __name__ == "__main__":
    main()
