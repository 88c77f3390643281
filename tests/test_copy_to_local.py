"""starter.environment.copy_to_local and its use on Colab: data read from the VM's disk, not from Drive."""

from __future__ import annotations

import os

import pytest
from test_environment import clean_env, colab  # noqa: F401 (fixtures: a simulated Colab runtime)

import starter.environment as environment
from starter.environment import copy_to_local


def dataset(root):
    """A small prepared dataset: nested folders, an empty file, a file over one copy chunk."""
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.jpg").write_bytes(b"x" * 10)
    (root / "images" / "big.png").write_bytes(os.urandom(environment._COPY_CHUNK + 123))
    (root / "empty.txt").write_bytes(b"")
    (root / "meta.json").write_text("{}")
    return root


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_copies_then_skips(tmp_path):
    """Is the folder copied byte for byte, and left alone (not recopied) the second time?"""
    src = dataset(tmp_path / "drive" / "cmp_facade")
    dst = tmp_path / "local" / "cmp_facade"
    assert copy_to_local(src, dst, progress=False) == dst
    assert files(dst) == files(src)
    stamp = (dst / "meta.json").stat().st_mtime_ns
    (dst / "marker-of-this-copy").mkdir()  # a folder holds no file: the manifest still matches
    os.utime(dst / "meta.json", ns=(stamp - 10**9, stamp - 10**9))
    copy_to_local(src, dst, progress=False)
    assert (dst / "meta.json").stat().st_mtime_ns == stamp - 10**9 and (dst / "marker-of-this-copy").is_dir()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["cmp_facade"]  # no temporary folder left


@pytest.mark.parametrize("damage", ["missing file", "short file"])
def test_recopies_an_incomplete_copy(tmp_path, damage):
    """Is a copy with a file missing or cut short replaced by a complete one?"""
    src = dataset(tmp_path / "drive" / "ds")
    dst = copy_to_local(src, tmp_path / "local" / "ds", progress=False)
    if damage == "missing file":
        (dst / "images" / "big.png").unlink()
    else:
        (dst / "images" / "big.png").write_bytes(b"cut")
    copy_to_local(src, dst, progress=False)
    assert files(dst) == files(src)


def test_interrupted_copy_leaves_no_complete_looking_folder(tmp_path, monkeypatch):
    """Does a copy that dies midway leave neither dst nor a temporary folder behind?"""
    src = dataset(tmp_path / "drive" / "ds")

    def dies(src, dst, relative_paths, **kwargs):
        (dst / "images").mkdir(parents=True)
        (dst / "meta.json").write_text("{}")  # part of the files made it
        raise KeyboardInterrupt("disconnect")

    monkeypatch.setattr(environment, "_copy_files", dies)
    with pytest.raises(KeyboardInterrupt):
        copy_to_local(src, tmp_path / "local" / "ds", progress=False)
    assert list((tmp_path / "local").iterdir()) == []
    with pytest.raises(FileNotFoundError, match="nothing to copy"):
        copy_to_local(tmp_path / "nowhere", tmp_path / "local" / "x", progress=False)


def test_colab_reads_the_data_from_local_disk(colab, tmp_path, monkeypatch, capsys):  # noqa: F811
    """On Colab, is the data prepared once in Drive, copied once to local disk, and $SEGKIT_DATA pointed there?"""
    local = tmp_path / "content" / "segkit-data"
    local.parent.mkdir()
    monkeypatch.setattr(environment, "LOCAL_DATA_DIR", local)
    drive_data = colab.kit / "data"

    env = environment.setup_notebook("fcn")
    assert colab.calls["prepare"] == [drive_data]
    assert os.environ["SEGKIT_DATA"] == str(local) and env.data_root == local
    assert (local / "cmp_facade" / "meta.json").is_file()
    assert "cmp_facade: prepared (copied to local disk" in capsys.readouterr().out

    env = environment.setup_notebook("fcn", quiet=True)  # the cell run again in the same session
    assert colab.calls["prepare"] == [drive_data] and env.data_root == local
    assert env.datasets["cmp_facade"].startswith("ready (copied")


def test_colab_keeps_drive_when_the_student_chose_a_data_folder(colab, tmp_path, monkeypatch):  # noqa: F811
    """Does a $SEGKIT_DATA the student set win over the local copy?"""
    local = tmp_path / "content" / "segkit-data"
    local.parent.mkdir()
    monkeypatch.setattr(environment, "LOCAL_DATA_DIR", local)
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path / "mine"))
    env = environment.setup_notebook("fcn", quiet=True)
    assert env.data_root == tmp_path / "mine" and not local.exists()
