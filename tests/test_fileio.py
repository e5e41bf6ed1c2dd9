"""The one atomic writer: whole new file or the old one, never half; special files refused."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from robo_player.errors import OutputPathError, UsageError
from robo_player.fileio import (
    Outputs,
    atomic_open,
    atomic_path,
    check_output_path,
    write_bytes,
    write_text,
)


def _names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_write_text_and_bytes_replace_the_file(tmp_path: Path) -> None:
    p = tmp_path / "out.txt"
    write_text(p, "one\n")
    assert p.read_text() == "one\n"
    write_text(p, "two\n")
    assert p.read_text() == "two\n"
    write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    assert _names(tmp_path) == ["out.txt"]  # no temporary file left behind


def test_new_file_gets_open_s_permissions(tmp_path: Path) -> None:
    p = write_text(tmp_path / "m.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


def test_missing_parent_is_created_or_refused(tmp_path: Path) -> None:
    write_text(tmp_path / "a" / "b" / "c.txt", "x")
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "x"
    with pytest.raises(FileNotFoundError):
        write_text(tmp_path / "no" / "c.txt", "x", mkdir=False)
    assert not (tmp_path / "no").exists()


def test_an_error_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    p = tmp_path / "keep.txt"
    p.write_text("old contents")
    with pytest.raises(RuntimeError, match="boom"), atomic_open(p) as fh:
        fh.write("half of the new")
        raise RuntimeError("boom")
    assert p.read_text() == "old contents"
    assert _names(tmp_path) == ["keep.txt"]


def test_an_interrupt_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    p = tmp_path / "keep.bin"
    p.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(p) as tmp:
        tmp.write_bytes(b"new but unfinished")
        raise KeyboardInterrupt
    assert p.read_bytes() == b"old"
    assert _names(tmp_path) == ["keep.bin"]


def test_atomic_path_keeps_the_suffix_for_writers_that_pick_a_format(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "a.png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != tmp_path / "a.png"
        tmp.write_bytes(b"png")
    with atomic_path(tmp_path / "c.cache", suffix=".npz") as tmp:
        assert tmp.name.endswith(".npz")
        tmp.write_bytes(b"npz")
    assert (tmp_path / "a.png").read_bytes() == b"png"
    assert (tmp_path / "c.cache").read_bytes() == b"npz"


@pytest.mark.parametrize("writer", [write_text, write_bytes])
def test_a_directory_is_not_clobbered(tmp_path: Path, writer: object) -> None:
    d = tmp_path / "adir"
    d.mkdir()
    (d / "inside").write_text("x")
    data = "x" if writer is write_text else b"x"
    with pytest.raises(OutputPathError, match=r"adir: is a directory, expected a regular file"):
        writer(d, data)  # type: ignore[operator]
    assert d.is_dir() and (d / "inside").read_text() == "x"
    assert _names(tmp_path) == ["adir"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_not_clobbered(tmp_path: Path) -> None:
    f = tmp_path / "pipe"
    os.mkfifo(f)
    with pytest.raises(OutputPathError, match="pipe: is a FIFO"):
        write_text(f, "x")
    assert stat.S_ISFIFO(f.lstat().st_mode)
    with pytest.raises(OutputPathError, match="is a FIFO"):
        Outputs().reserve(f)


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null here")
def test_a_device_is_not_clobbered() -> None:
    before = os.stat("/dev/null")
    with pytest.raises(OutputPathError, match="/dev/null: is a character device"):
        write_text("/dev/null", "x")
    with pytest.raises(OutputPathError, match="/dev/null: is a character device"):
        check_output_path("/dev/null")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_output_path_error_is_a_usage_error() -> None:
    # the CLI reports it as bad input (exit 2), like the other path errors
    assert issubclass(OutputPathError, UsageError)


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges there")
def test_a_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    dlink = tmp_path / "dlink"
    (tmp_path / "d").mkdir()
    dlink.symlink_to(tmp_path / "d")
    with pytest.raises(OutputPathError, match="is a directory"):
        write_text(dlink, "x")
    assert dlink.is_symlink()


def test_outputs_commit_all_or_nothing(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.png"
    a.write_text("old a")
    with Outputs() as out:
        ta, tb = out.reserve(a), out.reserve(b)
        assert ".part" in ta.name and ta.parent == tmp_path
        write_text(ta, "new a")
        write_bytes(tb, b"new b")
        assert a.read_text() == "old a" and not b.exists()  # nothing in place before commit
    assert a.read_text() == "new a" and b.read_bytes() == b"new b"
    assert _names(tmp_path) == ["a.json", "b.png"]

    with pytest.raises(RuntimeError), Outputs() as out:
        write_text(out.reserve(a), "newer a")
        out.reserve(b)
        raise RuntimeError("the run failed after one output was written")
    assert a.read_text() == "new a" and b.read_bytes() == b"new b"
    assert _names(tmp_path) == ["a.json", "b.png"]


def test_outputs_refuse_bad_paths_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    out = Outputs()
    out.reserve(tmp_path / "r.json")
    with pytest.raises(OutputPathError, match="given twice"):
        out.reserve(tmp_path / "r.json")
    with pytest.raises(OutputPathError, match="d: is a directory"):
        out.reserve(tmp_path / "d")
    out.abort()
    assert _names(tmp_path) == ["d"]


def test_outputs_skip_a_reserved_file_never_written(tmp_path: Path) -> None:
    with Outputs() as out:
        write_text(out.reserve(tmp_path / "yes.txt"), "x")
        out.reserve(tmp_path / "no.txt")
    assert _names(tmp_path) == ["yes.txt"]


def test_atomic_open_rejects_other_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode 'a'"), atomic_open(tmp_path / "x", "a"):
        pass
    assert _names(tmp_path) == []
