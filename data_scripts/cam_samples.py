"""Download the sample photographs of the CAM assignment (openly licensed, Wikimedia Commons).

    python -m data_scripts.cam_samples --root DIR            # download into DIR/cam_samples
    python -m data_scripts.cam_samples --root DIR --samples LIST.json   # another list, same format

Result, ``DIR/cam_samples/``::

    <name>.jpg / <name>.png   the original files, unchanged
    <name>.<ext>.sha256       checksum stored on first download (trust on first use, see below)
    ATTRIBUTION.md            source page, author and licence of every file (keep it with the files)
    meta.json                 the same as data

The list of files, with source URL, author and licence, is ``data_scripts/cam_samples.json``.
Commons publishes no SHA-256 for its files, so every entry has ``"sha256": null``: the first
successful download computes the checksum, prints it and stores it next to the file, and
every later run verifies against it (``data_scripts.download``'s trust on first use). Each
file must also decode as an image, so an HTML error page saved by a proxy is caught.

Re-running is safe and needs no network once every file is present and verified.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from data_scripts.download import DatasetEntry, DownloadError, RemoteFile, download, register
from starter.common import write_atomic

DATASET = "cam_samples"
SAMPLES_FILE = Path(__file__).with_name("cam_samples.json")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_REQUIRED_KEYS = ("filename", "url", "page", "author", "licence")


def load_samples(path: str | os.PathLike = SAMPLES_FILE) -> list[dict]:
    """Read and validate a sample list (the format of ``cam_samples.json``).

    Returns:
        list of dicts with at least filename, url, sha256 (str or None), page, author, licence.
    Raises:
        ValueError: a missing key, a duplicate or unsafe file name, or not an image file name.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    samples = data["samples"] if isinstance(data, dict) else data
    names = set()
    for sample in samples:
        missing = [key for key in _REQUIRED_KEYS if not sample.get(key)]
        if missing:
            raise ValueError(f"{path}: sample {sample.get('filename', '?')!r} lacks {missing}")
        name = sample["filename"]
        if Path(name).name != name or not name.lower().endswith(IMAGE_SUFFIXES):
            raise ValueError(f"{path}: {name!r} must be a plain image file name ({', '.join(IMAGE_SUFFIXES)})")
        if name in names:
            raise ValueError(f"{path}: {name!r} is listed twice")
        names.add(name)
        sample.setdefault("sha256", None)
    return samples


def registry_entry(samples: Sequence[dict]) -> DatasetEntry:
    """The samples as a ``DatasetEntry`` (files, licences, citation) for ``data_scripts.download.REGISTRY``."""
    licences = sorted({sample["licence"] for sample in samples})
    return DatasetEntry(
        name=DATASET,
        files=tuple(RemoteFile(s["filename"], s["url"], s.get("sha256"), s.get("size")) for s in samples),
        licence="Per file (see ATTRIBUTION.md): " + ", ".join(licences),
        citation="; ".join(f"{s['filename']}: {s['author']}, {s['licence']}, {s['page']}" for s in samples),
        homepage="https://commons.wikimedia.org/",
    )


ENTRY = register(registry_entry(load_samples()))


def _check_image(path: Path) -> None:
    """Raise DownloadError (after deleting the file and its checksum) if ``path`` is not an image."""
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # PIL raises many types for a non-image
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)
        raise DownloadError(
            f"{path.name} is not a readable image ({error}); it was deleted. A proxy or captive portal may "
            "have answered instead of the server: check the network and re-run"
        ) from error


def _attribution(samples: Sequence[dict]) -> str:
    lines = [
        "# Sample photographs of the CAM assignment",
        "",
        "Downloaded by `python -m data_scripts.cam_samples`. Keep this file with the images; the",
        "licences below (as given on each file's page, check it before redistributing) require it.",
        "",
    ]
    for sample in samples:
        lines.append(
            f"- `{sample['filename']}`: {sample.get('subject', '')}. Author: {sample['author']}. "
            f"Licence: {sample['licence']} ({sample.get('licence_url', sample['page'])}). "
            f"Source: {sample['page']}"
        )
    return "\n".join(lines) + "\n"


def prepare_cam_samples(
    root: str | os.PathLike,
    *,
    samples: Sequence[dict] | None = None,
    opener: Callable | None = None,
    progress: bool = True,
) -> Path:
    """Download (once) and check the sample photographs into ``<root>/cam_samples``.

    Inputs:
        root: data root (the folder ``$SEGKIT_DATA`` points at).
        samples: sample list (default: ``cam_samples.json``), e.g. from ``load_samples``.
        opener: passed to ``data_scripts.download.download`` (tests; default urllib).
        progress: show download progress bars.
    Returns:
        Path of the ``<root>/cam_samples`` folder.
    Raises:
        DownloadError: a file could not be downloaded, or is not an image (then nothing is kept for it).
    """
    samples = load_samples() if samples is None else list(samples)
    out_dir = Path(root) / DATASET
    failures = []
    for remote, sample in zip(registry_entry(samples).files, samples):
        try:
            _check_image(download(remote, out_dir, opener=opener, progress=progress))
        except DownloadError as error:
            failures.append(f"{sample['filename']} ({sample['url']}): {error}")
    if failures:
        raise DownloadError(
            "could not get every sample photograph:\n  "
            + "\n  ".join(failures)
            + f"\nDownload them by hand into {out_dir} (same file names) and re-run."
        )
    write_atomic(out_dir / "ATTRIBUTION.md", _attribution(samples))
    meta = {"dataset": DATASET, "samples": samples}
    write_atomic(out_dir / "meta.json", json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    return out_dir


def sample_paths(folder: str | os.PathLike) -> list[Path]:
    """The image files of a prepared ``cam_samples`` folder, sorted by name."""
    folder = Path(folder)
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def load_sample_bgr(path: str | os.PathLike) -> np.ndarray:
    """Read a sample as a BGR uint8 array (H, W, 3), like ``cv2.imread``; transparency is put on white."""
    with Image.open(path) as image:
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        rgb = np.asarray(Image.alpha_composite(white, image).convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=None, help="data root (default: $SEGKIT_DATA or ~/segkit-data)")
    parser.add_argument("--samples", type=Path, default=SAMPLES_FILE, help="sample list (JSON, default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    root = args.root
    if root is None:
        from starter.config import data_root  # imported lazily: pulls in torch

        root = data_root()
    try:
        out_dir = prepare_cam_samples(root, samples=load_samples(args.samples), progress=not args.no_progress)
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from error
    print(f"{len(sample_paths(out_dir))} sample photographs ready in {out_dir} (licences in ATTRIBUTION.md)")
    return out_dir


if __name__ == "__main__":
    main()
