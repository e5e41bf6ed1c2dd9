"""The one writer for every output: regular files atomically, special files straight.

Every output the project writes (plans, reports, calibrations, truths, MIDI, WAV, PNG,
checkpoints, corpus caches) goes through here.

- A regular file (or a new path) is written atomically: to a temporary file in the
  destination's own directory (so the rename cannot cross file systems), flushed and
  fsync'd, then renamed over the destination with :func:`os.replace`. On any error,
  interrupt included, the temporary file is removed and the destination is left as it
  was: either its old self or completely new, never half.
- A symbolic link is followed: its target is written as above and the link stays a link.
- A named pipe (FIFO) or a device (``/dev/null``, ``/dev/stdout``, a tty) is written
  straight, never replaced: renaming over it would replace the special file itself.
- ``-`` is standard output, where a caller allows it (:meth:`Outputs.reserve`
  ``stdout=True``: the CLI's ``--report -``).
- A directory or a socket is refused with :class:`~robo_player.errors.OutputPathError`
  (a usage error, exit 2) before anything is written.
- A write that fails (a full disk, ``/dev/full``, a closed pipe, no permission) raises
  :class:`~robo_player.errors.OutputWriteError` naming the path (exit 1 in the CLI).

:class:`Outputs` writes several files all-or-nothing (the CLI's ``--report``, ``--wav``,
``--plot``): each is written to a reserved temporary path and all are put in place only
when every one of them succeeded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import OutputPathError, OutputWriteError, RoboPlayerError

__all__ = [
    "STDOUT",
    "OutputPathError",
    "OutputWriteError",
    "Outputs",
    "atomic_open",
    "atomic_path",
    "check_output_path",
    "is_special",
    "write_bytes",
    "write_text",
]

STDOUT = "-"

# mkstemp makes 0600 files; outputs get what ``open`` would give them. Read once: the
# umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

_REFUSED = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
)
_STRAIGHT = (stat.S_ISFIFO, stat.S_ISCHR, stat.S_ISBLK)


def _mode(p: Path, shown: str | os.PathLike[str]) -> int | None:
    try:
        return p.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as err:
        raise OutputPathError(f"{shown}: cannot write: {err.strerror or err}") from err


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """The path a write to ``path`` goes to: ``path`` itself, or a symbolic link's
    target. OutputPathError if that is a directory or a socket; a FIFO or a device is
    returned as is (:func:`is_special`: it is written straight)."""
    p = Path(path)
    if p.is_symlink():
        p = Path(os.path.realpath(p))
    mode = _mode(p, path)
    if mode is None or stat.S_ISREG(mode) or any(t(mode) for t in _STRAIGHT):
        return p
    kind = next((name for test, name in _REFUSED if test(mode)), "not a regular file")
    raise OutputPathError(f"{path}: is {kind}, expected a regular file, a FIFO or a device (or a new path)")


def is_special(path: str | os.PathLike[str]) -> bool:
    """``path`` (or a link's target) is a FIFO or a device: written straight, never replaced."""
    mode = _mode(Path(os.path.realpath(path)), path)
    return mode is not None and any(t(mode) for t in _STRAIGHT)


def _write_error(path: str | os.PathLike[str], err: OSError) -> OutputWriteError:
    out = OutputWriteError(f"{path}: write failed: {err.strerror or err}")
    out.errno, out.strerror = err.errno, err.strerror
    return out


def _copy_into(src: Path, dest: str | os.PathLike[str], shown: str | os.PathLike[str]) -> None:
    """Write ``src``'s bytes straight into ``dest`` (a FIFO or a device): no temp, no rename."""
    try:
        with open(src, "rb") as fin, open(dest, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    except RoboPlayerError:
        raise
    except OSError as err:
        raise _write_error(shown, err) from err


def _copy_to_stdout(src: Path) -> None:
    try:
        sys.stdout.flush()
        out = getattr(sys.stdout, "buffer", None)
        with open(src, "rb") as fin:
            if out is not None:
                shutil.copyfileobj(fin, out)
                out.flush()
            else:  # a text-only stream (pytest's capture)
                sys.stdout.write(fin.read().decode("utf-8", "replace"))
                sys.stdout.flush()
    except OSError as err:
        raise _write_error("standard output", err) from err


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, suffix: str | None = None, mkdir: bool = True
) -> Iterator[Path]:
    """Yield a temporary path; on a clean exit its contents become ``path``.

    For writers that want a file name (``torch.save``, ``np.savez``, ``fig.savefig``).
    ``suffix`` is the temporary file's extension (default: ``path``'s), for writers that
    pick a format from it. A regular destination: the temporary file sits next to it,
    is fsync'd, gets mode 0644 (less the umask) like a file made by ``open``, and is
    renamed over it. A FIFO or a device: the temporary file is elsewhere and its bytes
    are written straight into the destination. ``mkdir``: create missing parent
    directories first.
    """
    final = check_output_path(path)
    sfx = final.suffix if suffix is None else suffix
    if is_special(final):
        with tempfile.TemporaryDirectory(prefix="robo-player-") as d:
            tmp = Path(d) / f"out{sfx}"
            yield tmp
            _copy_into(tmp, final, path)
        return
    try:
        if mkdir:
            final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=sfx, dir=final.parent)
        os.close(fd)
    except OSError as err:
        raise _write_error(path, err) from err
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # the writer may have closed it without fsync
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, final)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and not isinstance(err, RoboPlayerError):
            raise _write_error(path, err) from err
        raise
    _fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = "utf-8",
    mkdir: bool = True,
) -> Iterator[IO[Any]]:
    """Open a file to write ``path`` (atomically if regular, straight if a FIFO or a
    device): ``mode`` ``"w"`` (text) or ``"wb"``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode {mode!r}, allowed 'w' or 'wb'")
    kw: dict[str, Any] = {"encoding": encoding} if mode == "w" else {}
    final = check_output_path(path)
    if is_special(final):
        try:
            fh = open(final, mode, **kw)  # noqa: SIM115 (closed below, errors named)
        except OSError as err:
            raise _write_error(path, err) from err
        try:
            yield fh
            fh.flush()
        except OSError as err:
            if isinstance(err, RoboPlayerError):
                raise
            raise _write_error(path, err) from err
        finally:
            with contextlib.suppress(OSError):
                fh.close()
        return
    with atomic_path(path, mkdir=mkdir) as tmp, open(tmp, mode, **kw) as fh:
        yield fh
        fh.flush()


def write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", mkdir: bool = True
) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "w", encoding=encoding, mkdir=mkdir) as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, mkdir: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb", mkdir=mkdir) as fh:
        fh.write(data)
    return Path(path)


class Outputs:
    """Several output files, all or nothing.

    :meth:`reserve` checks a destination (refusing directories and sockets up front,
    before any work is done) and returns a temporary path to write; :meth:`commit` puts
    every reserved file in place (regular files renamed, FIFOs, devices and standard
    output written straight, in that order), :meth:`abort` removes them. As a context
    manager it commits on a clean exit and aborts on an error. A reserved path that the
    run did not write is skipped at commit (an optional output)."""

    def __init__(self) -> None:
        # (temporary path, destination or None for standard output, name as given)
        self._pending: list[tuple[Path, Path | None, str]] = []
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    def _scratch(self, suffix: str) -> Path:
        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="robo-player-")
        return Path(self._tmpdir.name) / f"{len(self._pending)}.part{suffix}"

    def reserve(self, path: str | os.PathLike[str], *, stdout: bool = False) -> Path:
        """A temporary path to write for ``path``. ``stdout``: ``-`` means standard
        output (otherwise ``-`` is refused: a file named so is never what was meant)."""
        shown = os.fspath(path)
        if shown == STDOUT:
            if not stdout:
                raise OutputPathError("-: standard output is allowed for the report only")
            if any(f is None for _, f, _ in self._pending):
                raise OutputPathError("-: standard output given twice as an output")
            tmp = self._scratch(".out")
            self._pending.append((tmp, None, shown))
            return tmp
        final = check_output_path(path)
        if any(f == final for _, f, _ in self._pending):
            raise OutputPathError(f"{path}: given twice as an output")
        if is_special(final):
            tmp = self._scratch(final.suffix)
        else:
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(
                    prefix=f".{final.name}.", suffix=f".part{final.suffix}", dir=final.parent
                )
                os.close(fd)
                os.unlink(name)  # writers create it (some refuse to overwrite); reserved by name
            except OSError as err:
                raise _write_error(path, err) from err
            tmp = Path(name)
        self._pending.append((tmp, final, shown))
        return tmp

    def commit(self) -> None:
        try:
            done = [(t, f, s) for t, f, s in self._pending if t.exists()]
            regular = [(t, f, s) for t, f, s in done if f is not None and not is_special(f)]
            for tmp, _, shown in regular:
                try:
                    with open(tmp, "rb+") as fh:
                        os.fsync(fh.fileno())
                except OSError as err:
                    raise _write_error(shown, err) from err
            for tmp, dest, shown in regular:
                assert dest is not None
                try:
                    os.replace(tmp, dest)
                except OSError as err:
                    raise _write_error(shown, err) from err
            for d in {f.parent for _, f, _ in regular if f is not None}:
                _fsync_dir(d)
            for tmp, target, shown in done:
                if target is None:
                    _copy_to_stdout(tmp)
                elif is_special(target):
                    _copy_into(tmp, target, shown)
        finally:
            self.abort()

    def abort(self) -> None:
        for tmp, _, _ in self._pending:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._pending.clear()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
