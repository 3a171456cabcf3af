"""Guarded atomic writes: a crash or a full disk never leaves a half-written file behind.

Every file babelir writes (metrics, reports, models, checkpoints, cache entries) goes
through these helpers: the free space is checked first where the size is known, the data
goes into a temporary sibling, is fsynced, then renamed into place (``os.replace``,
atomic on POSIX file systems). A write that fails because the disk is full removes its temporary
file and raises :class:`DiskSpaceError`, one line naming the folder and the space needed,
instead of the writer's own message (``No space left on device`` from safetensors,
``[enforce fail at inline_container.cc]`` from ``torch.save``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from babelir.core.errors import BabelirError, DataError


class DiskSpaceError(BabelirError):
    """A write needs more space than the file system holding its folder has left."""


#: Messages of writers that do not raise ``OSError(ENOSPC)`` (safetensors, torch's zip
#: writer) but fail this way when the disk is full.
_FULL_TEXTS = ("no space left on device", "disk quota exceeded")
_WRITE_FAILED_TEXTS = ("file write failed", "unexpected pos")
#: Below this much free space a failed write with no errno is taken as a full disk.
_NEARLY_FULL = 16 * 2**20


def human_size(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``: sizes in error messages."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def free_bytes(folder: str | os.PathLike[str]) -> int:
    """Free bytes on the file system that holds ``folder`` (or its nearest existing parent)."""
    folder = Path(folder).absolute()
    existing = next((p for p in [folder, *folder.parents] if p.exists()), Path("/"))
    return shutil.disk_usage(existing).free


def check_space(folder: str | os.PathLike[str], need: int, what: str = "the write") -> None:
    """Refuse a write of ``need`` bytes into ``folder`` before it starts, if it cannot fit."""
    free = free_bytes(folder)
    if need > free:
        raise DiskSpaceError(
            f"not enough disk space in {folder}: {what} needs about {human_size(need)}, "
            f"{human_size(free)} free"
        )


def is_disk_full(exc: BaseException, folder: str | os.PathLike[str]) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a write failing for space.

    Call it before cleaning up: a writer that gives no errno (torch's zip writer) counts
    as disk-full only while the file system is still (nearly) full.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e).lower()
        if any(t in text for t in _FULL_TEXTS):
            return True
        if any(t in text for t in _WRITE_FAILED_TEXTS) and free_bytes(folder) < _NEARLY_FULL:
            return True
        e = e.__cause__ or e.__context__
    return False


@contextlib.contextmanager
def disk_guard(
    folder: str | os.PathLike[str],
    *,
    need: int | None = None,
    what: str = "the write",
    cleanup: Callable[[], None] | None = None,
    hint: str = "",
) -> Iterator[None]:
    """Check the space for a write into ``folder``; make a full disk during it one line.

    ``cleanup`` runs on any failure (after the disk-full check, which looks at the free
    space the failed write left); ``hint`` ends the error message (what to do next).
    """
    if need is not None:
        try:
            check_space(folder, need, what)
        except DiskSpaceError as e:
            raise DiskSpaceError(f"{e}{hint}") from None
    try:
        yield
    except BaseException as exc:
        full = isinstance(exc, Exception) and not isinstance(exc, DiskSpaceError)
        full = full and is_disk_full(exc, folder)
        if cleanup is not None:
            cleanup()
        if not full:
            raise
        free = human_size(free_bytes(folder))
        room = f": it needs about {human_size(need)}, {free} free" if need else f" ({free} free)"
        raise DiskSpaceError(f"disk full in {folder} while writing {what}{room}{hint}") from exc


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def apply_umask(path: Path) -> None:
    """Give ``path`` and everything under it the permissions a plain create would.

    Libraries that write through their own temporary files (transformers writes
    ``model.safetensors`` via ``mkstemp``) leave 0600 files; a saved folder whose weights
    alone are private cannot be loaded by the colleagues its other files are shared with.
    Executable bits are kept (masked like the rest); symlinks are left alone.
    """
    mask = _umask()
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if p.is_symlink():
            continue
        if p.is_dir():
            os.chmod(p, 0o777 & ~mask)
        else:
            executable = os.stat(p).st_mode & 0o111
            os.chmod(p, (0o777 if executable else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], suffix: str = "", *, need: int | None = None
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only on success.

    ``need`` (bytes, when known) is checked against the free space first; a full disk
    during the write raises :class:`DiskSpaceError` (see :func:`disk_guard`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []

    def cleanup() -> None:
        for p in made:
            p.unlink(missing_ok=True)

    with disk_guard(path.parent, need=need, what=path.name, cleanup=cleanup):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        made.append(tmp_path)
        yield tmp_path
        # mkstemp creates 0600 files (and a writer may have replaced ours): give the result
        # the permissions a plain open() would.
        if tmp_path.exists():
            apply_umask(tmp_path)
            _fsync(tmp_path)  # on disk before it takes the name (ENOSPC can surface here)
        os.replace(tmp_path, path)


def read_input(path: Path, expected: str, *, not_found: str = "file not found") -> bytes:
    """A data file's bytes, or a one-line DataError naming it (missing, a folder,
    unreadable): every reader of user-given files reports them alike."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: {not_found}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected {expected}") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def read_input_text(path: Path, expected: str, *, not_found: str = "file not found") -> str:
    """:func:`read_input` decoded as UTF-8 (a one-line DataError with the byte if not)."""
    raw = read_input(path, expected, not_found=not_found)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path, need=len(data)) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path: str | os.PathLike[str], rows: Any) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy", need=array.nbytes) as tmp:
        np.save(tmp, array)


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike[str], *, need: int | None = None, what: str | None = None,
    hint: str = "",
) -> Iterator[Path]:  # fmt: skip
    """Build a folder in a temporary sibling and rename it onto ``path`` on success.

    An existing ``path`` is replaced only after the new folder is complete. ``need``
    (bytes, an estimate) is checked first; a full disk while the folder is built removes
    it and raises :class:`DiskSpaceError` naming ``what`` (default: the folder's name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []

    def cleanup() -> None:
        for p in made:
            shutil.rmtree(p, ignore_errors=True)

    with disk_guard(path.parent, need=need, what=what or path.name, cleanup=cleanup, hint=hint):
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        made.append(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        apply_umask(tmp)
        for f in tmp.rglob("*"):
            if f.is_file() and not f.is_symlink():
                _fsync(f)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)


@contextlib.contextmanager
def build_lock(dest: Path) -> Iterator[None]:
    """Serialize concurrent builds of one folder (parallel workers, two evaluations)."""
    import fcntl

    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
