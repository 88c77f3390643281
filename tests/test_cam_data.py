"""Tests of the CAM sample-photograph script (data_scripts/cam_samples.py).

Nothing here touches the internet: the files are served by a local http.server thread on
127.0.0.1 and fetched through the real download path (data_scripts.download.download with
its default urllib opener), or read through file:// URLs.
"""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from data_scripts import cam_samples
from data_scripts import download as dl

COMMONS_FILE_URL = re.compile(r"^https://upload\.wikimedia\.org/wikipedia/commons/([0-9a-f])/([0-9a-f]{2})/([^/]+)$")
OPEN_LICENCES = {
    "Public domain",
    "CC0 1.0",
    "CC BY 2.0",
    "CC BY 2.5",
    "CC BY 3.0",
    "CC BY 4.0",
    "CC BY-SA 2.0",
    "CC BY-SA 2.5",
    "CC BY-SA 3.0",
    "CC BY-SA 4.0",
}


# --- a local HTTP server -----------------------------------------------------------------


@pytest.fixture
def server(static_http_server):
    return static_http_server


def _image_bytes(fmt: str, seed: int, mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, len(mode)), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format=fmt)
    return buffer.getvalue()


def _local_samples(server) -> list[dict]:
    """The real sample list with every URL pointing at the local server (same names and licences)."""
    samples = cam_samples.load_samples()
    for i, sample in enumerate(samples):
        fmt = "PNG" if sample["filename"].endswith(".png") else "JPEG"
        data = _image_bytes(fmt, i, "RGBA" if fmt == "PNG" else "RGB")
        server.files[f"/{sample['filename']}"] = data
        sample["url"] = server.url(sample["filename"])
    return samples


# --- the sample list -------------------------------------------------------------------------


def test_sample_list_names_openly_licensed_commons_files():
    samples = cam_samples.load_samples()
    assert len(samples) >= 3
    for sample in samples:
        match = COMMONS_FILE_URL.match(sample["url"])
        assert match, sample["url"]
        digest = hashlib.md5(match.group(3).encode()).hexdigest()
        # Commons stores File:NAME under md5(NAME)[0]/md5(NAME)[:2]: a typo in the URL shows here.
        assert (match.group(1), match.group(2)) == (digest[0], digest[:2]), sample["url"]
        assert sample["page"] == f"https://commons.wikimedia.org/wiki/File:{match.group(3)}"
        assert sample["licence"] in OPEN_LICENCES and sample["author"]
        assert sample["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", sample["sha256"])
    entry = dl.REGISTRY["cam_samples"]
    assert [f.url for f in entry.files] == [s["url"] for s in samples]
    assert entry is cam_samples.ENTRY and "CC BY-SA 3.0" in entry.licence


def test_load_samples_rejects_unsafe_or_incomplete_entries(tmp_path):
    good = {"filename": "a.jpg", "url": "file:///a.jpg", "page": "p", "author": "x", "licence": "CC0 1.0"}
    for bad in ({**good, "filename": "../a.jpg"}, {**good, "filename": "a.txt"}, {**good, "licence": ""}):
        path = tmp_path / "list.json"
        path.write_text(json.dumps({"samples": [bad]}))
        with pytest.raises(ValueError):
            cam_samples.load_samples(path)
    path.write_text(json.dumps({"samples": [good, good]}))
    with pytest.raises(ValueError, match="twice"):
        cam_samples.load_samples(path)


# --- downloading ----------------------------------------------------------------------------


def test_prepare_downloads_checks_and_records_attribution(tmp_path, server):
    samples = _local_samples(server)
    folder = cam_samples.prepare_cam_samples(tmp_path, samples=samples, progress=False)
    assert folder == tmp_path / "cam_samples"
    paths = cam_samples.sample_paths(folder)
    assert [p.name for p in paths] == sorted(s["filename"] for s in samples)
    for sample in samples:
        path = folder / sample["filename"]
        assert path.read_bytes() == server.files[f"/{sample['filename']}"]
        # no published checksum: trust on first use stores the computed one next to the file
        sidecar = (folder / f"{sample['filename']}.sha256").read_text().split()[0]
        assert sidecar == hashlib.sha256(path.read_bytes()).hexdigest()
        image = cam_samples.load_sample_bgr(path)
        assert image.dtype == np.uint8 and image.shape == (24, 32, 3)
    attribution = (folder / "ATTRIBUTION.md").read_text()
    for sample in samples:
        assert sample["author"] in attribution and sample["page"] in attribution and sample["licence"] in attribution
    meta = json.loads((folder / "meta.json").read_text())
    assert [s["filename"] for s in meta["samples"]] == [s["filename"] for s in samples]

    n_requests = len(server.requests)
    assert cam_samples.prepare_cam_samples(tmp_path, samples=samples, progress=False) == folder
    assert len(server.requests) == n_requests  # everything present and verified: no network


def test_a_changed_file_is_refetched_against_the_stored_checksum(tmp_path, server):
    samples = _local_samples(server)
    folder = cam_samples.prepare_cam_samples(tmp_path, samples=samples[:1], progress=False)
    target = folder / samples[0]["filename"]
    original = target.read_bytes()
    target.write_bytes(original[:-10] + b"0123456789")  # corrupted on disk
    cam_samples.prepare_cam_samples(tmp_path, samples=samples[:1], progress=False)
    assert target.read_bytes() == original


def test_a_non_image_answer_is_rejected_and_not_kept(tmp_path, server):
    samples = _local_samples(server)[:2]
    server.files[f"/{samples[1]['filename']}"] = b"<html><body>Please log in to the Wi-Fi</body></html>"
    with pytest.raises(dl.DownloadError, match="not a readable image") as error:
        cam_samples.prepare_cam_samples(tmp_path, samples=samples, progress=False)
    assert samples[1]["filename"] in str(error.value)
    folder = tmp_path / "cam_samples"
    assert (folder / samples[0]["filename"]).is_file()
    assert not (folder / samples[1]["filename"]).exists()
    assert not (folder / f"{samples[1]['filename']}.sha256").exists()
    assert not (folder / "ATTRIBUTION.md").exists()


def test_missing_file_reports_the_url(tmp_path, server):
    samples = _local_samples(server)[:1]
    del server.files[f"/{samples[0]['filename']}"]
    with pytest.raises(dl.DownloadError, match="HTTP 404") as error:
        cam_samples.prepare_cam_samples(tmp_path, samples=samples, progress=False)
    assert samples[0]["url"] in str(error.value)


def test_command_line_with_file_urls(tmp_path, capsys):
    source = tmp_path / "source"
    source.mkdir()
    (source / "one.jpg").write_bytes(_image_bytes("JPEG", 1))
    listing = tmp_path / "list.json"
    listing.write_text(
        json.dumps(
            {
                "samples": [
                    {
                        "filename": "one.jpg",
                        "url": (source / "one.jpg").as_uri(),
                        "sha256": None,
                        "page": "https://commons.wikimedia.org/wiki/File:One.jpg",
                        "author": "Someone",
                        "licence": "CC0 1.0",
                    }
                ]
            }
        )
    )
    out_dir = cam_samples.main(["--root", str(tmp_path / "data"), "--samples", str(listing), "--no-progress"])
    assert (out_dir / "one.jpg").read_bytes() == (source / "one.jpg").read_bytes()
    assert "1 sample photographs ready" in capsys.readouterr().out
