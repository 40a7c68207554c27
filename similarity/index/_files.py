"""Writing a build safely (one writer at a time, fsynced files, sparse matrices as mappable arrays),
and reading its record files by position.

Private to :mod:`similarity.index`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
from scipy import sparse

logger = logging.getLogger("similarity.index")


class ReadOnlyFile:
    """A build's file kept open for positional reads: ``pread`` is safe from several threads, and
    the file stays readable after its build is pruned."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``start`` to ``stop`` of the file."""
        return os.pread(self._fd, stop - start, start)

    def copy_to(self, dest: Path, block: int = 1 << 24) -> None:
        """Write the whole file to ``dest`` (from the open file: its path may be gone)."""
        size = os.fstat(self._fd).st_size
        with open(dest, "wb") as out:
            for start in range(0, size, block):
                out.write(self.read(start, min(start + block, size)))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the block."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def remove_leftovers(builds: Path) -> None:
    """Remove the hidden ``.<stamp>-*`` directories of saves that died (call under the lock)."""
    for leftover in builds.iterdir():
        if leftover.name.startswith(".") and leftover.is_dir():
            logger.info("removing %s, left by a save that did not finish", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def current_name(path: Path) -> str | None:
    try:
        return (path / "CURRENT").read_text().strip() or None
    except OSError:
        return None


def umask() -> int:
    # Python can only read the umask by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(directory: Path) -> None:
    """Make the renames and new entries in ``directory`` durable (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_CSR_PARTS = ("data", "indices", "indptr")


def save_csr(build: Path, name: str, matrix: sparse.spmatrix) -> None:
    """A sparse matrix as plain ``.npy`` arrays, which load memory-mapped (``.npz`` cannot)."""
    matrix = sparse.csr_matrix(matrix)
    for part in _CSR_PARTS:
        np.save(build / f"{name}.{part}.npy", getattr(matrix, part))
    np.save(build / f"{name}.shape.npy", np.asarray(matrix.shape, dtype=np.int64))


def load_csr(build: Path, name: str, mmap: bool) -> sparse.csr_matrix:
    if (build / f"{name}.npz").exists():  # builds saved before the arrays were split
        return sparse.load_npz(build / f"{name}.npz").tocsr()
    parts = [np.load(build / f"{name}.{part}.npy", mmap_mode="r" if mmap else None) for part in _CSR_PARTS]
    shape = tuple(int(v) for v in np.load(build / f"{name}.shape.npy"))
    return sparse.csr_matrix(tuple(parts), shape=shape, copy=False)
