"""Atomic outputs: all-or-nothing, readable permissions, path escapes refused."""
from __future__ import annotations

import os
import stat

import pytest

from data_assets.errors import DataError
from data_assets.io import FILE_MODE, atomic_directory, atomic_path, load_image, resolve_inside, write_text


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"], "no temp file left behind"
    assert stat.S_IMODE(os.stat(target).st_mode) == FILE_MODE


def test_atomic_directory_replaces_as_a_whole(tmp_path):
    target = tmp_path / "ds"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a"]


def test_resolve_inside_refuses_escapes(tmp_path):
    (tmp_path / "root").mkdir()
    assert resolve_inside(tmp_path / "root", "x/y.jpg") == (tmp_path / "root" / "x" / "y.jpg").resolve()
    for bad in ["../secret.jpg", "/etc/passwd", "a/../../b.jpg"]:
        with pytest.raises(DataError, match="escapes the dataset root"):
            resolve_inside(tmp_path / "root", bad)
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(DataError, match="escapes"):
        resolve_inside(tmp_path / "root", "link/outside.jpg")


def test_load_image_names_the_file_and_reason(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(DataError, match="notes.jpg: not an image"):
        load_image(bad)
    with pytest.raises(DataError, match="does not exist"):
        load_image(tmp_path / "missing.png")
