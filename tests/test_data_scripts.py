"""Tests of the dataset registry, downloader, extractor and preparation scripts.

Nothing here touches the internet: downloads are served by a local http.server thread on
127.0.0.1, and the fake CMP archives are laid out exactly like the official ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import tarfile
import threading
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_scripts import cmp_facade, synthetic
from data_scripts import download as dl
from starter.constants import CMP_CLASSES, CMP_SPLIT_SIZES, IGNORE_INDEX
from starter.data import CMPFacade, FolderSegmentation, SyntheticSegmentation

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CMP_BASE = REPO_ROOT.parent / "shared" / "data" / "cmp_facade_base"


# --- a local HTTP server -----------------------------------------------------------------


class _FakeFileServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` (url path -> bytes); behaviour switches are plain attributes."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _FakeFileHandler)
        self.files: dict[str, bytes] = {}
        self.honour_range = True
        self.cut_after: int | None = None  # send only this many body bytes, then hang up
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.body_bytes_sent = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


class _FakeFileHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server: _FakeFileServer = self.server
        range_header = self.headers.get("Range")
        server.requests.append((self.path, range_header))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if range_header and server.honour_range:
            start = int(range_header.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:
            body = body[: server.cut_after]  # Content-Length promised more: a dropped connection
        server.body_bytes_sent += len(body)  # counted first: the client may finish before write returns
        self.wfile.write(body)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def data_http_server():
    server = _FakeFileServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _payload(n_bytes: int = 300_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _serve(server: _FakeFileServer, name: str, data: bytes, *, with_sha=True, with_size=True) -> dl.RemoteFile:
    server.files[f"/{name}"] = data
    return dl.RemoteFile(name, server.url(name), _sha(data) if with_sha else None, len(data) if with_size else None)


# --- registry ----------------------------------------------------------------------------


def test_registry_lists_official_files_with_terms():
    cmp_entry = dl.REGISTRY["cmp_facade"]
    assert [f.filename for f in cmp_entry.files] == ["CMP_facade_DB_base.zip", "CMP_facade_DB_extended.zip"]
    assert cmp_entry.files[0].url == "https://cmp.felk.cvut.cz/~tylecr1/facade/CMP_facade_DB_base.zip"
    assert cmp_entry.files[1].url == "https://cmp.felk.cvut.cz/~tylecr1/facade/CMP_facade_DB_extended.zip"
    assert "Tyleček" in cmp_entry.citation and "GCPR 2013" in cmp_entry.citation
    assert cmp_entry.licence.startswith("Research use")
    stanford = dl.REGISTRY["stanford_background"]
    assert stanford.files[0].url == "http://dags.stanford.edu/data/iccv09Data.tar.gz"
    assert "ICCV 2009" in stanford.citation
    with pytest.raises(dataclasses.FrozenInstanceError):
        cmp_entry.name = "other"


def test_register_refuses_a_conflicting_entry(monkeypatch):
    monkeypatch.setattr(dl, "REGISTRY", dict(dl.REGISTRY))
    entry = dl.DatasetEntry("toy", (dl.RemoteFile("a.zip", "file:///a.zip"),), "CC0", "none", "http://x")
    assert dl.register(entry) is entry and dl.REGISTRY["toy"] is entry
    dl.register(entry)  # same entry again: fine
    with pytest.raises(ValueError, match="already registered"):
        dl.register(dataclasses.replace(entry, files=()))


# --- download ----------------------------------------------------------------------------


def test_download_verifies_and_second_call_is_a_no_op(tmp_path, data_http_server):
    data = _payload()
    remote = _serve(data_http_server, "a.bin", data)
    path = dl.download(remote, tmp_path, progress=False)
    assert path == tmp_path / "a.bin" and path.read_bytes() == data
    assert not (tmp_path / "a.bin.part").exists()
    n_requests, mtime = len(data_http_server.requests), path.stat().st_mtime_ns
    assert dl.download(remote, tmp_path, progress=False) == path
    assert len(data_http_server.requests) == n_requests  # no network at all
    assert path.stat().st_mtime_ns == mtime


def test_download_resumes_part_file_with_range(tmp_path, data_http_server):
    data = _payload()
    remote = _serve(data_http_server, "a.bin", data)
    (tmp_path / "a.bin.part").write_bytes(data[:100_000])
    path = dl.download(remote, tmp_path, progress=False)
    assert path.read_bytes() == data
    assert data_http_server.requests == [("/a.bin", "bytes=100000-")]
    assert data_http_server.body_bytes_sent == len(data) - 100_000  # only the missing tail


def test_download_restarts_when_server_ignores_range(tmp_path, data_http_server):
    data = _payload()
    remote = _serve(data_http_server, "a.bin", data)
    data_http_server.honour_range = False
    (tmp_path / "a.bin.part").write_bytes(data[:100_000])
    path = dl.download(remote, tmp_path, progress=False)
    assert path.read_bytes() == data  # not prefix + whole file
    assert data_http_server.requests[0][1] == "bytes=100000-"
    assert data_http_server.body_bytes_sent == len(data)


def test_download_with_stale_overlong_part_starts_over(tmp_path, data_http_server):
    data = _payload()
    remote = _serve(data_http_server, "a.bin", data, with_size=False)  # size unknown: server says 416
    (tmp_path / "a.bin.part").write_bytes(data + b"junk")
    assert dl.download(remote, tmp_path, progress=False).read_bytes() == data
    assert [rng for _, rng in data_http_server.requests] == [f"bytes={len(data) + 4}-", None]


def test_interrupted_download_keeps_part_and_next_run_resumes(tmp_path, data_http_server):
    data = _payload()
    remote = _serve(data_http_server, "a.bin", data)
    data_http_server.cut_after = 120_000
    with pytest.raises(dl.DownloadError, match="re-run to resume"):
        dl.download(remote, tmp_path, progress=False)
    assert not (tmp_path / "a.bin").exists()
    assert (tmp_path / "a.bin.part").read_bytes() == data[:120_000]

    data_http_server.cut_after = None
    assert dl.download(remote, tmp_path, progress=False).read_bytes() == data
    assert data_http_server.requests[-1] == ("/a.bin", "bytes=120000-")


def test_corrupt_download_raises_checksum_error_and_leaves_no_file(tmp_path, data_http_server):
    data = _payload()
    remote = dl.RemoteFile("a.bin", data_http_server.url("a.bin"), _sha(data), None)
    corrupt = bytearray(data)
    corrupt[1234] ^= 0xFF
    data_http_server.files["/a.bin"] = bytes(corrupt)
    with pytest.raises(dl.ChecksumError, match="SHA-256"):
        dl.download(remote, tmp_path, progress=False)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()


def test_truncated_download_with_known_size_is_rejected(tmp_path, data_http_server):
    data = _payload()
    remote = dl.RemoteFile("a.bin", data_http_server.url("a.bin"), _sha(data), len(data))
    data_http_server.files["/a.bin"] = data[:-10]  # server itself has a short file
    with pytest.raises(dl.ChecksumError, match="expected 300000 bytes"):
        dl.download(remote, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unknown_checksum_is_trusted_on_first_use_then_enforced(tmp_path, data_http_server, capsys):
    data = _payload()
    remote = _serve(data_http_server, "a.bin", data, with_sha=False, with_size=False)
    path = dl.download(remote, tmp_path, progress=False)
    sidecar = tmp_path / "a.bin.sha256"
    assert sidecar.read_text().split()[0] == _sha(data)
    assert _sha(data) in capsys.readouterr().out

    path.unlink()
    data_http_server.files["/a.bin"] = _payload(seed=1)  # the server now serves other bytes
    with pytest.raises(dl.ChecksumError):
        dl.download(remote, tmp_path, progress=False)
    assert not path.exists()


def test_corrupt_existing_file_is_downloaded_again(tmp_path, data_http_server):
    data = _payload()
    remote = _serve(data_http_server, "a.bin", data)
    (tmp_path / "a.bin").write_bytes(b"not the file")
    assert dl.download(remote, tmp_path, progress=False).read_bytes() == data
    assert len(data_http_server.requests) == 1


def test_missing_remote_file_raises_download_error(tmp_path, data_http_server):
    remote = dl.RemoteFile("gone.bin", data_http_server.url("gone.bin"))
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download(remote, tmp_path, progress=False)
    assert not (tmp_path / "gone.bin").exists()


def test_download_uses_injected_opener_and_file_urls(tmp_path):
    source = tmp_path / "src" / "a.bin"
    source.parent.mkdir()
    data = _payload(50_000)
    source.write_bytes(data)
    remote = dl.RemoteFile("a.bin", source.as_uri(), _sha(data), len(data))
    seen_urls = []

    def recording_opener(request, timeout):
        seen_urls.append(request.full_url)
        return urllib.request.urlopen(request, timeout=timeout)

    path = dl.download(remote, tmp_path / "dest", opener=recording_opener, progress=False)
    assert path.read_bytes() == data and seen_urls == [source.as_uri()]


# --- extract -----------------------------------------------------------------------------


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, content in members.items():
            zipped.writestr(name, content)
    return buffer.getvalue()


def _tar_gz(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tarred:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tarred.addfile(info, io.BytesIO(content))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tarred.addfile(info)
    return path


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_extract_unpacks_once(tmp_path, kind):
    members = {"top/a.txt": b"alpha", "top/sub/b.txt": b"beta", "c.txt": b"gamma"}
    archive = tmp_path / f"arch.{kind}"
    if kind == "zip":
        archive.write_bytes(_zip_bytes(members))
    else:
        _tar_gz(archive, members)
    dest = tmp_path / "out"
    assert dl.extract(archive, dest) == dest
    for name, content in members.items():
        assert (dest / name).read_bytes() == content
    assert (dest / f".extracted-{archive.name}").is_file()
    assert not any(p.name.startswith(".extracting") for p in dest.iterdir())

    (dest / "top" / "a.txt").write_bytes(b"edited")
    dl.extract(archive, dest)  # marker present: nothing is redone
    assert (dest / "top" / "a.txt").read_bytes() == b"edited"


def test_extract_redoes_work_after_a_crash_and_merges_folders(tmp_path):
    dest = tmp_path / "out"
    (dest / ".extracting-arch.zip").mkdir(parents=True)  # staging left by a crash
    (dest / "top").mkdir()
    (dest / "top" / "a.txt").write_bytes(b"half")  # moved before the crash, no marker
    (dest / "top" / "other.txt").write_bytes(b"from another archive")
    archive = tmp_path / "arch.zip"
    archive.write_bytes(_zip_bytes({"top/a.txt": b"alpha"}))
    dl.extract(archive, dest)
    assert (dest / "top" / "a.txt").read_bytes() == b"alpha"
    assert (dest / "top" / "other.txt").read_bytes() == b"from another archive"
    assert not (dest / ".extracting-arch.zip").exists()


@pytest.mark.parametrize(
    "kind, members, symlinks",
    [
        ("zip", {"../evil.txt": b"x"}, None),
        ("zip", {"/tmp/evil.txt": b"x"}, None),
        ("zip", {"ok/../../evil.txt": b"x"}, None),
        ("tar.gz", {"../evil.txt": b"x"}, None),
        ("tar.gz", {"ok.txt": b"x"}, {"link": "../../etc"}),
    ],
)
def test_extract_rejects_members_escaping_the_destination(tmp_path, kind, members, symlinks):
    archive = tmp_path / f"bad.{kind}"
    if kind == "zip":
        archive.write_bytes(_zip_bytes(members))
    else:
        _tar_gz(archive, members, symlinks)
    dest = tmp_path / "deep" / "out"
    with pytest.raises(dl.UnsafeArchiveError):
        dl.extract(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    assert not (dest / f".extracted-{archive.name}").exists()
    assert list(dest.iterdir()) == []  # nothing moved into place, staging cleaned up


def test_extract_rejects_non_archives(tmp_path):
    not_archive = tmp_path / "x.zip"
    not_archive.write_bytes(b"plain text")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        dl.extract(not_archive, tmp_path / "out")


# --- CMP Facade: split rule and mask mapping ---------------------------------------------


def test_split_rule_first_500_train_next_30_val_rest_test():
    names = [f"cmp_b{i:04d}" for i in range(1, 379)] + [f"cmp_x{i:04d}" for i in range(1, 229)]
    shuffled = list(np.random.default_rng(0).permutation(names))
    splits = cmp_facade.split_names(shuffled)
    assert CMP_SPLIT_SIZES == (500, 30)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [500, 30, 76]
    assert splits["train"] + splits["val"] + splits["test"] == sorted(names)
    assert splits["train"][-1] == "cmp_x0122" and splits["val"][0] == "cmp_x0123"


def test_base_only_data_gets_its_own_split_with_val_and_test():
    """Does the base set alone (378 pairs) still get validation and test images?"""
    names = [f"cmp_b{i:04d}" for i in range(378, 0, -1)]
    assert cmp_facade.split_sizes_for(names) == (288, 30)
    assert cmp_facade.split_sizes_for([*names, "cmp_x0001"]) == CMP_SPLIT_SIZES
    splits = cmp_facade.split_names(names, cmp_facade.split_sizes_for(names))
    assert [len(splits[s]) for s in ("train", "val", "test")] == [288, 30, 60]
    assert splits["test"][0] == "cmp_b0319" and splits["test"][-1] == "cmp_b0378"


def test_split_rule_rejects_duplicates():
    with pytest.raises(ValueError, match="duplicate"):
        cmp_facade.split_names(["a", "b", "a"])


def _palette_image(values: np.ndarray) -> Image.Image:
    """Palette ("P") image storing ``values`` as indices, like the official masks."""
    values = np.ascontiguousarray(values, dtype=np.uint8)
    image = Image.frombytes("P", (values.shape[1], values.shape[0]), values.tobytes())
    image.putpalette([channel for i in range(256) for channel in ((i * 40) % 256, (i * 90) % 256, (i * 20) % 256)])
    return image


def _palette_png(path: Path, values: np.ndarray) -> None:
    _palette_image(values).save(path)


def test_official_mask_values_become_indices_and_others_ignore(tmp_path):
    official = np.arange(14, dtype=np.uint8).reshape(2, 7)  # 0..13
    _palette_png(tmp_path / "m.png", official)
    converted = cmp_facade.official_mask_to_index(tmp_path / "m.png")
    expected = np.array([[255, 0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(converted, expected)


# --- CMP Facade: fake official archives --------------------------------------------------


def _official_pair_bytes(name: str, rng: np.random.Generator) -> dict[str, bytes]:
    height, width = int(rng.integers(20, 30)), int(rng.integers(24, 34))
    jpg = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(jpg, format="JPEG")
    png = io.BytesIO()
    labels = rng.integers(1, 13, (height, width)).astype(np.uint8)
    labels[0, 0] = 0  # an unlabelled pixel
    _palette_image(labels).save(png, format="PNG")
    xml = f"<annotation><file>{name}</file></annotation>".encode()
    return {"jpg": jpg.getvalue(), "png": png.getvalue(), "xml": xml}


def _official_archive(folder: str, prefix: str, count: int, seed: int) -> tuple[bytes, dict[str, dict[str, bytes]]]:
    """Zip laid out like the official one: ``<folder>/cmp_<prefix>NNNN.{jpg,png,xml}`` + text files."""
    rng = np.random.default_rng(seed)
    pairs = {f"cmp_{prefix}{i:04d}": _official_pair_bytes(f"cmp_{prefix}{i:04d}", rng) for i in range(1, count + 1)}
    members = {f"{folder}/{name}.{ext}": content for name, files in pairs.items() for ext, content in files.items()}
    members["label_names.txt"] = b"1 background 1\n2 facade 2\n"
    members["readme.txt"] = b"CMP Facade Database\n"
    return _zip_bytes(members), pairs


@pytest.fixture
def data_cmp_archives():
    base_zip, base_pairs = _official_archive("base", "b", 4, seed=1)
    extended_zip, extended_pairs = _official_archive("extended", "x", 3, seed=2)
    return {"base": base_zip, "extended": extended_zip, "pairs": {**base_pairs, **extended_pairs}}


def _serve_cmp_registry(monkeypatch, server, archives: dict, *, extended=True) -> None:
    files = []
    for filename, key in (("CMP_facade_DB_base.zip", "base"), ("CMP_facade_DB_extended.zip", "extended")):
        if key == "base" or extended:
            server.files[f"/{filename}"] = archives[key]
        files.append(dl.RemoteFile(filename, server.url(filename)))  # no checksum: trust on first use
    monkeypatch.setitem(dl.REGISTRY, "cmp_facade", dataclasses.replace(dl.REGISTRY["cmp_facade"], files=tuple(files)))


def _unreachable_cmp_files() -> tuple[dl.RemoteFile, ...]:
    """The CMP registry files pointing at a closed local port: any download attempt fails fast."""
    return tuple(
        dataclasses.replace(f, url=f"http://127.0.0.1:9/{f.filename}") for f in dl.REGISTRY["cmp_facade"].files
    )


def _tree_state(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_prepare_downloads_extracts_and_converts(tmp_path, monkeypatch, data_http_server, data_cmp_archives):
    _serve_cmp_registry(monkeypatch, data_http_server, data_cmp_archives)
    monkeypatch.setattr(cmp_facade, "CMP_SPLIT_SIZES", (3, 2))  # 7 fake pairs: 3/2/2
    out = cmp_facade.prepare_cmp_facade(tmp_path, progress=False)
    assert out == tmp_path / "cmp_facade"

    names = sorted(data_cmp_archives["pairs"])
    assert sorted(p.stem for p in (out / "images").glob("*.jpg")) == names
    for name in names:
        official = data_cmp_archives["pairs"][name]
        assert (out / "images" / f"{name}.jpg").read_bytes() == official["jpg"]
        with Image.open(out / "masks" / f"{name}.png") as mask_file:
            assert mask_file.mode == "L"
            mask = np.asarray(mask_file)
        with Image.open(io.BytesIO(official["png"])) as official_file:
            expected = np.asarray(official_file).astype(np.int64) - 1
        expected[expected < 0] = IGNORE_INDEX
        np.testing.assert_array_equal(mask, expected)

    splits = {s: (out / "splits" / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert splits == {"train": names[:3], "val": names[3:5], "test": names[5:]}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == list(CMP_CLASSES)
    assert meta["counts"] == {"train": 3, "val": 2, "test": 2}
    assert meta["source"] == {"base": 4, "extended": 3}
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".part"))]

    # Re-running downloads nothing and rewrites no image or mask.
    n_requests, before = len(data_http_server.requests), _tree_state(out / "images") | _tree_state(out / "masks")
    cmp_facade.prepare_cmp_facade(tmp_path, progress=False)
    assert len(data_http_server.requests) == n_requests
    assert _tree_state(out / "images") | _tree_state(out / "masks") == before


def test_prepare_from_archive_folder_with_base_only_warns(tmp_path, monkeypatch, data_cmp_archives, capsys):
    archives = tmp_path / "zips"
    archives.mkdir()
    (archives / "CMP_facade_DB_base.zip").write_bytes(data_cmp_archives["base"])
    dead = _unreachable_cmp_files()
    monkeypatch.setitem(dl.REGISTRY, "cmp_facade", dataclasses.replace(dl.REGISTRY["cmp_facade"], files=dead))

    out = cmp_facade.main(["--root", str(tmp_path / "data"), "--archives", str(archives), "--no-progress"])
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == ["cmp_b0001", "cmp_b0002", "cmp_b0003", "cmp_b0004"]
    assert (out / "splits" / "train.txt").read_text().split() == ["cmp_b0001", "cmp_b0002", "cmp_b0003", "cmp_b0004"]
    assert (out / "splits" / "val.txt").read_text() == "" and (out / "splits" / "test.txt").read_text() == ""
    err = capsys.readouterr().err
    assert "skipping optional CMP_facade_DB_extended.zip" in err and "only the base set (4 pairs)" in err
    assert (archives / "CMP_facade_DB_base.zip.sha256").is_file()  # trust on first use recorded


def test_prepare_fails_clearly_when_base_cannot_be_fetched(tmp_path, monkeypatch):
    dead = _unreachable_cmp_files()
    monkeypatch.setitem(dl.REGISTRY, "cmp_facade", dataclasses.replace(dl.REGISTRY["cmp_facade"], files=dead))
    with pytest.raises(dl.DownloadError, match="--archives"):
        cmp_facade.prepare_cmp_facade(tmp_path, progress=False)
    assert not (tmp_path / "cmp_facade").exists()


def test_prepare_from_unpacked_folders(tmp_path, data_cmp_archives):
    unpacked = tmp_path / "unpacked"
    for key in ("base", "extended"):
        with zipfile.ZipFile(io.BytesIO(data_cmp_archives[key])) as zipped:
            zipped.extractall(unpacked / key)  # two separate folders, as a user may have them
    out = cmp_facade.prepare_cmp_facade(
        tmp_path / "data",
        unpacked_dirs=[unpacked / "base", unpacked / "extended"],
        progress=False,
    )
    assert (out / "splits" / "train.txt").read_text().split() == sorted(data_cmp_archives["pairs"])
    dataset = CMPFacade(tmp_path / "data", "train")
    image, mask = dataset[0]
    assert image.shape[1:] == mask.shape and mask.dtype == torch.int64


def test_prepare_without_pairs_raises(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no CMP Facade pairs"):
        cmp_facade.prepare_cmp_facade(tmp_path, unpacked_dirs=[tmp_path / "empty"], progress=False)


@pytest.fixture(scope="module")
def data_shared_cmp_prepared(tmp_path_factory):
    if not (SHARED_CMP_BASE / "base").is_dir():
        pytest.skip(f"shared CMP Facade base copy not found at {SHARED_CMP_BASE}")
    root = tmp_path_factory.mktemp("cmp_real")
    cmp_facade.prepare_cmp_facade(root, unpacked_dirs=[SHARED_CMP_BASE], progress=False)
    return root


def test_prepare_real_shared_base_copy(data_shared_cmp_prepared):
    out = data_shared_cmp_prepared / "cmp_facade"
    names = [
        name for split in ("train", "val", "test") for name in (out / "splits" / f"{split}.txt").read_text().split()
    ]
    assert len(names) == 378 and names == sorted(names)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["counts"] == {"train": 288, "val": 30, "test": 60}
    assert meta["split_rule"].startswith("base only")
    seen_values: set[int] = set()
    for name in names:
        with Image.open(out / "images" / f"{name}.jpg") as image_file:
            image_size = image_file.size
        with Image.open(out / "masks" / f"{name}.png") as mask_file:
            assert mask_file.size == image_size, name
            seen_values.update(np.unique(np.asarray(mask_file)).tolist())
    assert seen_values <= set(range(12)) | {IGNORE_INDEX}
    assert len(seen_values - {IGNORE_INDEX}) == 12  # every class occurs somewhere


def test_cmp_facade_dataset_loads_the_real_copy(data_shared_cmp_prepared):
    dataset = CMPFacade(data_shared_cmp_prepared, "train")
    assert len(dataset) == 288 and len(CMPFacade(data_shared_cmp_prepared, "test")) == 60
    assert dataset.classes == CMP_CLASSES and dataset.n_class == 12
    image, mask = dataset[0]
    assert image.dtype.is_floating_point and image.shape[0] == 3 and image.shape[1:] == mask.shape
    assert set(mask.unique().tolist()) <= set(range(12)) | {IGNORE_INDEX}


# --- synthetic dataset on disk -----------------------------------------------------------


def test_synthetic_script_is_deterministic_and_matches_the_dataset(tmp_path):
    args = ["--n", "12", "--n-class", "5", "--size", "32", "40", "--seed", "3"]
    first = synthetic.main(["--root", str(tmp_path / "a"), *args])
    second = synthetic.main(["--root", str(tmp_path / "b"), *args])
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len([f for f in files if f.parts[0] == "images"]) == 12
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative

    generator = SyntheticSegmentation(12, 5, (32, 40), seed=3)
    image, mask = generator.generate(7)
    np.testing.assert_array_equal(np.asarray(Image.open(first / "images" / "synth_00007.png")), image)
    np.testing.assert_array_equal(np.asarray(Image.open(first / "masks" / "synth_00007.png")), mask)

    split_sizes = {s: len((first / "splits" / f"{s}.txt").read_text().split()) for s in ("train", "val", "test")}
    assert split_sizes == {"train": 10, "val": 1, "test": 1}
    folder = FolderSegmentation(first, "train")
    assert folder.n_class == 5 and len(folder) == 10
