"""Dataset registry, a resumable verified downloader and a safe archive extractor.

``REGISTRY`` names every file the kit can fetch, with its licence and citation. Add a
dataset by adding a ``DatasetEntry`` below (or calling ``register`` from its script).

Checksums: a ``RemoteFile`` whose ``sha256`` is None has no published checksum. The first
successful download then computes the SHA-256, prints it and stores it next to the file as
``<file>.sha256``; every later run verifies against that stored value ("trust on first
use"). Put the printed value into the registry once it is confirmed.

Downloads go to ``<file>.part``, resume with an HTTP ``Range`` request, are checked for
size and SHA-256 and only then renamed to the final name, so a final file is always
complete. The network call is injectable (``opener``) so tests never need the internet.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from starter.common import write_atomic

__all__ = [
    "RemoteFile",
    "DatasetEntry",
    "REGISTRY",
    "register",
    "download",
    "extract",
    "sha256_of",
    "DownloadError",
    "ChecksumError",
    "UnsafeArchiveError",
]

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60
_USER_AGENT = "segkit-data-scripts/0.1 (+python urllib)"


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file.

    Inputs:
        filename: name it is saved under.
        url: http(s):// or file:// address, or None for a file the user must download by hand
            (e.g. data behind a registration form); `download` then explains where to put it.
        sha256: published hex digest, or None when unknown (trust on first use, see module doc).
        size: size in bytes, or None when unknown.
    """

    filename: str
    url: str | None
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset: its files and the terms under which it may be used."""

    name: str
    files: tuple[RemoteFile, ...]
    licence: str
    citation: str
    homepage: str


class DownloadError(RuntimeError):
    """A download failed; the message says whether re-running will resume it."""


class ChecksumError(DownloadError):
    """The downloaded bytes are not the expected file."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the destination folder."""


_CMP_CITATION = (
    "R. Tyleček, R. Šára, Spatial Pattern Templates for Recognition of Objects with Regular Structure, GCPR 2013"
)
_STANFORD_CITATION = (
    "Gould, Fulton, Koller, Decomposing a Scene into Geometric and Semantically Consistent Regions, ICCV 2009"
)

REGISTRY: dict[str, DatasetEntry] = {
    "cmp_facade": DatasetEntry(
        name="cmp_facade",
        files=(
            RemoteFile("CMP_facade_DB_base.zip", "https://cmp.felk.cvut.cz/~tylecr1/facade/CMP_facade_DB_base.zip"),
            RemoteFile(
                "CMP_facade_DB_extended.zip",
                "https://cmp.felk.cvut.cz/~tylecr1/facade/CMP_facade_DB_extended.zip",
            ),
        ),
        licence=f"Research use. Cite: {_CMP_CITATION}",
        citation=_CMP_CITATION,
        homepage="https://cmp.felk.cvut.cz/~tylecr1/facade/",
    ),
    "stanford_background": DatasetEntry(
        name="stanford_background",
        files=(RemoteFile("iccv09Data.tar.gz", "http://dags.stanford.edu/data/iccv09Data.tar.gz"),),
        licence=f"Research use. Cite: {_STANFORD_CITATION}",
        citation=_STANFORD_CITATION,
        homepage="http://dags.stanford.edu/projects/scenedataset.html",
    ),
    # further datasets (vaihingen, cam_samples, ...) go here
}


def register(entry: DatasetEntry) -> DatasetEntry:
    """Add ``entry`` to ``REGISTRY``; a different entry under the same name is an error."""
    existing = REGISTRY.get(entry.name)
    if existing is not None and existing != entry:
        raise ValueError(f"dataset {entry.name!r} is already registered with different files")
    REGISTRY[entry.name] = entry
    return entry


# --- checksums -------------------------------------------------------------------------


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks (archives can be GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(final_path: Path) -> Path:
    return final_path.with_name(final_path.name + ".sha256")


def _expected_sha256(remote: RemoteFile, final_path: Path) -> str | None:
    """Published checksum, else the one stored by a previous run, else None."""
    if remote.sha256:
        return remote.sha256.lower()
    sidecar = _sidecar(final_path)
    if sidecar.is_file():
        tokens = sidecar.read_text().split()
        if tokens:
            return tokens[0].lower()
    return None


def _write_sidecar(final_path: Path, digest: str) -> None:
    sidecar = _sidecar(final_path)
    write_atomic(sidecar, f"{digest}  {final_path.name}\n")  # sha256sum format


def _verify(path: Path, remote: RemoteFile, expected_sha: str | None) -> str:
    """Check size and checksum of ``path``; return its digest or raise ChecksumError."""
    actual_size = path.stat().st_size
    if remote.size is not None and actual_size != remote.size:
        raise ChecksumError(f"{path.name}: expected {remote.size} bytes, got {actual_size}")
    digest = sha256_of(path)
    if expected_sha is not None and digest != expected_sha:
        raise ChecksumError(
            f"{path.name}: SHA-256 is {digest}, expected {expected_sha}. The download is "
            "corrupt or the file changed on the server; it was deleted, re-run to fetch it again"
        )
    return digest


# --- download --------------------------------------------------------------------------


def _default_opener(request: urllib.request.Request, timeout: float):
    return urllib.request.urlopen(request, timeout=timeout)


def _status_of(response) -> int:
    # file:// responses report no status; they always deliver the whole file.
    status = getattr(response, "status", None)
    if status is None and hasattr(response, "getcode"):
        status = response.getcode()
    return int(status) if status else 200


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
    return int(value) if value and value.isdigit() else None


def _range_start(response) -> int | None:
    """First byte of a 206 reply from its ``Content-Range: bytes START-END/TOTAL`` header."""
    value = response.headers.get("Content-Range", "") if getattr(response, "headers", None) else ""
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _open(url: str, offset: int, opener: Callable):
    headers = {"User-Agent": _USER_AGENT}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    return opener(urllib.request.Request(url, headers=headers), _TIMEOUT_S)


def _stream_to_part(remote: RemoteFile, part_path: Path, opener: Callable, progress: bool) -> None:
    """Append the rest of the file to ``part_path`` (or restart it when the server cannot resume)."""
    offset = part_path.stat().st_size if part_path.exists() else 0
    try:
        try:
            response = _open(remote.url, offset, opener)
        except urllib.error.HTTPError as error:
            if error.code != 416 or offset == 0:
                raise
            # 416: the server cannot serve from our offset (the .part is stale or too long).
            part_path.unlink()
            offset = 0
            response = _open(remote.url, offset, opener)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{remote.url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(f"{remote.url}: {getattr(error, 'reason', error)}; check the network and re-run") from error

    with response:
        status = _status_of(response)
        if offset > 0 and status != 206:
            offset = 0  # the server ignored Range and sends the whole file: start over
        elif offset > 0 and _range_start(response) not in (None, offset):
            part_path.unlink()
            raise DownloadError(
                f"{remote.url}: server answered a different byte range than requested; "
                "the partial file was deleted, re-run to download from the start"
            )
        remaining = _content_length(response)
        total = remote.size or ((offset + remaining) if remaining is not None else None)
        mode = "ab" if offset > 0 else "wb"
        received = 0
        with (
            open(part_path, mode) as part,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=remote.filename,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            try:
                for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                    part.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (TimeoutError, http.client.IncompleteRead, ConnectionError, urllib.error.URLError) as error:
                raise DownloadError(
                    f"{remote.filename}: connection lost after {offset + received} bytes ({error}); "
                    "re-run to resume from there"
                ) from error
    if remaining is not None and received < remaining:
        raise DownloadError(f"{remote.filename}: server sent {received} of {remaining} bytes; re-run to resume")


def download(
    remote: RemoteFile,
    dest_dir: str | os.PathLike,
    *,
    opener: Callable | None = None,
    progress: bool = True,
) -> Path:
    """Fetch ``remote`` into ``dest_dir`` and return the verified file's path.

    Idempotent: a final file that passes verification is returned without any network
    access. Resumable: an interrupted download leaves ``<file>.part`` which the next call
    continues with an HTTP Range request (restarting if the server ignores Range). A file
    failing size/SHA-256 verification is deleted and ``ChecksumError`` is raised. Without a
    published checksum the digest is computed, printed and kept in ``<file>.sha256``
    (trust on first use), and later runs verify against it.

    Inputs:
        remote: what to fetch.
        dest_dir: folder to save into (created if needed).
        opener: ``opener(urllib.request.Request, timeout) -> response`` (default
            ``urllib.request.urlopen``); inject a fake one in tests.
        progress: show a tqdm progress bar.
    Returns:
        Path of the final file ``dest_dir / remote.filename``.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final_path = dest_dir / remote.filename
    part_path = final_path.with_name(final_path.name + ".part")
    expected_sha = _expected_sha256(remote, final_path)
    if remote.url is None and not final_path.is_file():
        raise DownloadError(
            f"{remote.filename} must be downloaded by hand (the provider requires registration); "
            f"put it at {final_path} and run this again"
        )

    if final_path.is_file():
        try:
            digest = _verify(final_path, remote, expected_sha)
        except ChecksumError as error:
            print(f"warning: existing {final_path} failed verification ({error}); downloading again", file=sys.stderr)
            final_path.unlink()
        else:
            if expected_sha is None:
                _report_first_checksum(final_path, digest)
            return final_path

    part_size = part_path.stat().st_size if part_path.is_file() else 0
    if remote.size is not None and part_size > remote.size:
        part_path.unlink()  # longer than the real file: cannot be a prefix of it
    if remote.size is None or part_size != remote.size:  # else the .part is already complete
        _stream_to_part(remote, part_path, opener or _default_opener, progress)

    try:
        digest = _verify(part_path, remote, expected_sha)
    except ChecksumError:
        part_path.unlink(missing_ok=True)
        raise
    if expected_sha is None:
        _report_first_checksum(final_path, digest)
    os.replace(part_path, final_path)  # atomic: the final name only ever holds a verified file
    return final_path


def _report_first_checksum(final_path: Path, digest: str) -> None:
    _write_sidecar(final_path, digest)
    print(
        f"{final_path.name}: no published checksum; SHA-256 {digest} stored in "
        f"{_sidecar(final_path).name} and verified on later runs (trust on first use)"
    )


# --- extraction ------------------------------------------------------------------------


def _check_member_name(name: str, archive: Path) -> None:
    """Reject absolute paths, drive letters and '..' components."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise UnsafeArchiveError(
            f"{archive.name}: member {name!r} would be written outside the destination folder; "
            "the archive is corrupt or malicious, delete it and download it again"
        )


def _check_inside(target: Path, root: Path, name: str, archive: Path) -> None:
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} resolves outside the destination folder")


def _extract_zip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zipped:
        members = zipped.infolist()
        for member in members:
            _check_member_name(member.filename, archive)
            _check_inside(into / member.filename, into, member.filename, archive)
        zipped.extractall(into, members)


def _extract_tar(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tarred:
        members = tarred.getmembers()
        for member in members:
            _check_member_name(member.name, archive)
            _check_inside(into / member.name, into, member.name, archive)
            if not (member.isfile() or member.isdir()):
                # Datasets need no links or devices, and links are how traversal sneaks in.
                raise UnsafeArchiveError(
                    f"{archive.name}: member {member.name!r} is a link or special file; refusing to extract"
                )
        tarred.extractall(into, members, filter="data")


def _merge_move(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, merging folders and replacing files.

    Merging (not replacing whole folders) lets several archives share a top-level folder,
    and replacing files overwrites partial results of a crashed earlier extraction.
    """
    if source.is_dir():
        if target.exists() and not target.is_dir():
            target.unlink()
        target.mkdir(exist_ok=True)
        for child in source.iterdir():
            _merge_move(child, target / child.name)
        return
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(source, target)


def _marker_for(archive: Path, dest_dir: Path) -> Path:
    return dest_dir / f".extracted-{archive.name}"


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Unpack a .zip or .tar(.gz) archive into ``dest_dir`` safely and once.

    Members are first unpacked into a temporary folder inside ``dest_dir`` and then moved
    into place; a marker file ``.extracted-<archive name>`` is written last. A call that
    finds the marker does nothing; a crash before the marker makes the next call extract
    again (replacing partial results). Members with absolute paths, '..' or links are
    rejected with ``UnsafeArchiveError`` before anything is written.

    Inputs:
        archive: path of the archive.
        dest_dir: folder to unpack into (created if needed; may hold other archives' output).
    Returns:
        ``dest_dir`` as a Path.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    marker = _marker_for(archive, dest_dir)
    if marker.is_file():
        return dest_dir
    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = dest_dir / f".extracting-{archive.name}"
    if staging.exists():
        shutil.rmtree(staging)  # left over from a crashed run
    staging.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, staging)
        else:
            raise ValueError(f"{archive} is neither a zip nor a tar archive; delete it and download it again")
        for entry in staging.iterdir():
            _merge_move(entry, dest_dir / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    marker.write_text(f"{archive.name}\n")
    return dest_dir
