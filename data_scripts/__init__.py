"""Scripts that download and prepare the course datasets.

Each dataset has a module runnable as ``python -m data_scripts.<name> --root DIR``. The
registry of downloadable files and the shared downloader/extractor live in
``data_scripts.download``; call the downloader as
``from data_scripts.download import download`` (it is deliberately not re-exported here,
where its name would hide the ``data_scripts.download`` module).
"""

from data_scripts.download import (
    REGISTRY,
    ChecksumError,
    DatasetEntry,
    DownloadError,
    RemoteFile,
    UnsafeArchiveError,
    extract,
    register,
)

__all__ = [
    "REGISTRY",
    "ChecksumError",
    "DatasetEntry",
    "DownloadError",
    "RemoteFile",
    "UnsafeArchiveError",
    "extract",
    "register",
]
