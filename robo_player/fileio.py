"""The one atomic writer: a file is either its old self or completely new, never half.

Every output the project writes (plans, reports, calibrations, truths, MIDI, WAV, PNG,
checkpoints, corpus caches) goes through here. A write goes to a temporary file in the
destination's own directory (so the rename cannot cross file systems), is flushed and
fsync'd, and is then renamed over the destination with :func:`os.replace`, which is
atomic on POSIX and Windows. On any error, interrupt included, the temporary file is
removed and the destination is left as it was.

An existing destination that is not a regular file (a directory, a FIFO, a device such
as ``/dev/null``, a socket) is refused with :class:`~robo_player.errors.OutputPathError`
before anything is written: renaming over it would replace the special file itself.
A symbolic link is followed: its target is written and the link stays a link.

:class:`Outputs` writes several files all-or-nothing (the CLI's ``--report``, ``--wav``,
``--plot``): each is written to a reserved temporary path and all are renamed into place
only when every one of them succeeded.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import OutputPathError

__all__ = [
    "OutputPathError",
    "Outputs",
    "atomic_open",
    "atomic_path",
    "check_output_path",
    "write_bytes",
    "write_text",
]

# mkstemp makes 0600 files; outputs get what ``open`` would give them. Read once: the
# umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """The path a write to ``path`` replaces: ``path`` itself, or a symbolic link's
    target. OutputPathError if that exists and is not a regular file."""
    p = Path(path)
    if p.is_symlink():
        p = Path(os.path.realpath(p))
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        return p
    except OSError as err:
        raise OutputPathError(f"{path}: cannot write: {err.strerror or err}") from err
    if stat.S_ISREG(mode):
        return p
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise OutputPathError(f"{path}: is {kind}, expected a regular file to write (or a new path)")


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
    """Yield a temporary path next to ``path``; on a clean exit it replaces ``path``.

    For writers that want a file name (``torch.save``, ``np.savez``, ``fig.savefig``).
    ``suffix`` is the temporary file's extension (default: ``path``'s), for writers that
    pick a format from it. The file is fsync'd before the rename and gets mode 0644
    (less the umask), like a file made by ``open``. ``mkdir``: create missing parent
    directories first.
    """
    final = check_output_path(path)
    if mkdir:
        final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=final.suffix if suffix is None else suffix,
        dir=final.parent,
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # the writer may have closed it without fsync
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = "utf-8",
    mkdir: bool = True,
) -> Iterator[IO[Any]]:
    """Open a file to write ``path`` atomically: ``mode`` ``"w"`` (text) or ``"wb"``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode {mode!r}, allowed 'w' or 'wb'")
    with atomic_path(path, mkdir=mkdir) as tmp:
        kw: dict[str, Any] = {"encoding": encoding} if mode == "w" else {}
        with open(tmp, mode, **kw) as fh:
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

    :meth:`reserve` checks a destination (refusing directories and other special files
    up front, before any work is done) and returns a temporary sibling path to write;
    :meth:`commit` renames every reserved file into place, :meth:`abort` removes them.
    As a context manager it commits on a clean exit and aborts on an error. A reserved
    path that the run did not write is skipped at commit (an optional output)."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    def reserve(self, path: str | os.PathLike[str]) -> Path:
        final = check_output_path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        if any(f == final for _, f in self._pending):
            raise OutputPathError(f"{path}: given twice as an output")
        fd, name = tempfile.mkstemp(
            prefix=f".{final.name}.", suffix=f".part{final.suffix}", dir=final.parent
        )
        os.close(fd)
        os.unlink(name)  # writers create it (some refuse to overwrite); reserved by name
        tmp = Path(name)
        self._pending.append((tmp, final))
        return tmp

    def commit(self) -> None:
        done = [(t, f) for t, f in self._pending if t.exists()]
        for tmp, _ in done:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        for tmp, final in done:
            os.replace(tmp, final)
        for d in {f.parent for _, f in done}:
            _fsync_dir(d)
        self._pending.clear()

    def abort(self) -> None:
        for tmp, _ in self._pending:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._pending.clear()

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
