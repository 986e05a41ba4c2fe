"""Atomic writes: errors name the user's path, stale temporary files go, the umask stays."""

import os
import stat
import subprocess
import sys

import pytest

from csgaussian import fileio
from csgaussian.fileio import FILE_MODE, atomic_write, write_bytes_atomic


def test_a_folder_as_output_names_the_users_path(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(OSError) as refused:
        write_bytes_atomic(folder, b"x")
    assert str(folder) in str(refused.value) and ".tmp" not in str(refused.value)
    assert os.listdir(folder) == [] and sorted(os.listdir(tmp_path)) == ["out"]


def test_temporary_files_of_a_dead_writer_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead_pid = int(dead.stdout)  # exited: its temporary files are stale
    stale = tmp_path / f".scene.csg.{dead_pid}.abc123.tmp"
    live = tmp_path / f".scene.csg.{os.getppid()}.def456.tmp"  # a running writer's
    other = tmp_path / f".other.csg.{dead_pid}.abc123.tmp"  # another file's: left alone
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    write_bytes_atomic(tmp_path / "scene.csg", b"whole")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "scene.csg").read_bytes() == b"whole"


def test_the_mode_is_set_without_touching_the_umask(tmp_path, monkeypatch):
    def no_umask(mask):
        raise AssertionError("atomic_write changed the process umask")

    monkeypatch.setattr(os, "umask", no_umask)
    write_bytes_atomic(tmp_path / "a.bin", b"x")
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == FILE_MODE
    monkeypatch.undo()
    current = os.umask(0)
    os.umask(current)
    assert FILE_MODE == 0o666 & ~current


def test_a_failed_write_leaves_nothing(tmp_path):
    def broken(handle):
        handle.write(b"half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "x.bin", broken)
    assert os.listdir(tmp_path) == []
    assert fileio.TEMP_SUFFIX == ".tmp"
