"""The one writer: regular files atomically (whole new file or the old one, never half),
FIFOs and devices straight (never replaced), directories refused, failed writes named."""

from __future__ import annotations

import os
import stat
import sys
import threading
from pathlib import Path

import pytest

from robo_player.errors import OutputPathError, OutputWriteError, RoboPlayerError, UsageError
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
    with pytest.raises(OutputWriteError, match="no/c.txt: write failed: No such file"):
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


def _read_fifo_in_background(f: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def reader() -> None:
        with open(f, "rb") as fh:
            got.append(fh.read())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    return t, got


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("how", ["write_text", "atomic_path", "outputs"])
def test_a_fifo_is_written_straight_never_replaced(tmp_path: Path, how: str) -> None:
    f = tmp_path / "pipe"
    os.mkfifo(f)
    t, got = _read_fifo_in_background(f)
    if how == "write_text":
        write_text(f, "through the pipe")
    elif how == "atomic_path":
        with atomic_path(f) as tmp:
            tmp.write_bytes(b"through the pipe")
    else:
        with Outputs() as out:
            write_text(out.reserve(f), "through the pipe")
    t.join(10)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(f.lstat().st_mode)
    assert _names(tmp_path) == ["pipe"]  # no temporary file beside it


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_symlink_to_a_fifo_writes_the_fifo(tmp_path: Path) -> None:
    f = tmp_path / "pipe"
    os.mkfifo(f)
    link = tmp_path / "link"
    link.symlink_to(f)
    t, got = _read_fifo_in_background(f)
    write_bytes(link, b"abc")
    t.join(10)
    assert got == [b"abc"] and link.is_symlink() and stat.S_ISFIFO(f.lstat().st_mode)


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null here")
def test_a_device_is_written_straight_never_replaced() -> None:
    before = os.stat("/dev/null")
    write_text("/dev/null", "x")
    write_bytes("/dev/null", b"x")
    with atomic_path("/dev/null") as tmp:
        tmp.write_bytes(b"x")
    with Outputs() as out:
        write_text(out.reserve("/dev/null"), "x")
    assert check_output_path("/dev/null") == Path("/dev/null")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_a_failed_write_is_an_error_naming_the_path() -> None:
    with pytest.raises(OutputWriteError, match="/dev/full: write failed"):
        write_text("/dev/full", "x" * 10)
    with pytest.raises(OutputWriteError, match="/dev/full: write failed"), atomic_path(
        "/dev/full"
    ) as tmp:
        tmp.write_bytes(b"x")
    with pytest.raises(OutputWriteError, match="/dev/full: write failed"), Outputs() as out:
        write_text(out.reserve("/dev/full"), "x")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    assert issubclass(OutputWriteError, RoboPlayerError)
    assert not issubclass(OutputWriteError, UsageError)  # exit 1, not a usage error


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_directory_is_a_write_error(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(OutputWriteError, match="ro/x.json: write failed"):
            write_text(d / "x.json", "x")
        with pytest.raises(OutputWriteError, match="ro/y.json: write failed"):
            Outputs().reserve(d / "y.json")
    finally:
        d.chmod(0o700)


def test_dash_is_standard_output_only_where_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Outputs() as out:
        write_text(out.reserve("-", stdout=True), "to stdout\n")
        write_text(out.reserve(tmp_path / "f.txt"), "to a file")
    assert capsys.readouterr().out == "to stdout\n"
    assert _names(tmp_path) == ["f.txt"]
    with pytest.raises(OutputPathError, match="standard output is allowed for the report only"):
        Outputs().reserve("-")
    assert not (Path.cwd() / "-").exists()


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
