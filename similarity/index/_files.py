"""Writing a build safely (one writer at a time, fsynced files, sparse matrices as plain arrays),
and reading its files by position: records, and the rows of arrays (``pread``, not memory maps).

Private to :mod:`similarity.index`.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
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
        data = os.pread(self._fd, stop - start, start)
        if len(data) == stop - start:
            return data
        parts = [data]  # one read returns at most ~2 GB on Linux
        while (got := sum(map(len, parts))) < stop - start:
            more = os.pread(self._fd, stop - start - got, start + got)
            if not more:
                raise ValueError(f"{self.path}: the file ends before byte {stop}")
            parts.append(more)
        return b"".join(parts)

    def read_spans(self, starts: np.ndarray, sizes: np.ndarray) -> bytes:
        """The ``sizes[i]`` bytes at each ``starts[i]``, end to end (one ``pread`` each)."""
        starts, sizes = starts.tolist(), sizes.tolist()
        data = b"".join(map(os.pread, itertools.repeat(self._fd), sizes, starts))
        if len(data) != sum(sizes):
            data = b"".join(self.read(a, a + n) for a, n in zip(starts, sizes))
        return data

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


def _runs(rows: np.ndarray, n: int):
    """For row keys ``rows`` of an ``n``-row array: the distinct rows in order, where each key is
    among them (``None`` when the keys are those rows already), and the runs of adjacent distinct
    rows as ``starts``/``stops``."""
    if rows.size and (rows.min() < -n or rows.max() >= n):
        raise IndexError(f"row index out of range for {n} rows")
    rows = np.where(rows < 0, rows + n, rows)
    wanted, where = np.unique(rows, return_inverse=True)
    if rows.ndim == 1 and len(wanted) == len(rows) and np.array_equal(wanted, rows):
        where = None
    else:
        where = where.reshape(rows.shape)
    breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
    starts = wanted[np.concatenate([[0], breaks])] if len(wanted) else wanted
    stops = np.append(wanted[breaks - 1], wanted[-1]) + 1 if len(wanted) else wanted
    return wanted, where, starts, stops


class ReadAsArray:
    """``np.asarray(x)`` and ``x.astype(dtype)`` for array-likes whose ``x[:]`` reads every row."""

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def astype(self, dtype, copy: bool = True) -> np.ndarray:
        return np.asarray(self, dtype=dtype)


class NpyRows(ReadAsArray):
    """A ``.npy`` array on disk whose rows are read with ``pread`` when indexed.

    For arrays a server reads a few random rows of per request (field vectors, stored-list offsets):
    a memory map would put the whole page-cache folio around each row (up to 2 MB) into the process,
    so a thousand requests map most of the file; reads copy only the rows asked for, and the pages
    stay in the shared page cache.

    ``array[i]``, ``array[rows]`` (adjacent rows read together), ``array[a:b]``, and a further key
    on the other axes (``array[rows, j]``) give in-memory arrays; ``np.asarray(array)`` reads all.
    """

    def __init__(self, path: str | Path):
        header = np.load(path, mmap_mode="r")  # the header only: no page of the data is touched
        if not header.flags.c_contiguous:
            raise ValueError(f"{path}: a Fortran-ordered array cannot be read by rows")
        self.shape: tuple[int, ...] = header.shape
        self.dtype = header.dtype
        self._start = int(header.offset)
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        del header
        self._file = ReadOnlyFile(path)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return len(self) * self._row_bytes

    def __len__(self) -> int:
        return self.shape[0]

    def spans(self, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """Rows ``starts[i]`` to ``stops[i]`` of each span, end to end (one read a span)."""
        starts, stops = np.asarray(starts, dtype=np.int64), np.asarray(stops, dtype=np.int64)
        raw = self._file.read_spans(self._start + starts * self._row_bytes, (stops - starts) * self._row_bytes)
        return np.frombuffer(raw, dtype=self.dtype).reshape((-1,) + self.shape[1:])

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        wanted, where, starts, stops = _runs(rows, len(self))
        got = self.spans(starts, stops)
        return got if where is None else got[where]

    def __getitem__(self, key) -> np.ndarray:
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(first, slice):
            start, stop, step = first.indices(len(self))
            out = self.spans([start], [max(start, stop)])[::step] if step > 0 else self._rows(np.arange(start, stop, step))
        elif isinstance(first, (int, np.integer)):  # one row: one read, no run-finding
            if not -len(self) <= first < len(self):
                raise IndexError(f"row index out of range for {len(self)} rows")
            row = int(first) % len(self)
            out = self.spans([row], [row + 1])[0]
        else:
            out = self._rows(np.asarray(first, dtype=np.int64))
        if not rest:
            return out
        if not all(isinstance(k, (int, np.integer, slice)) for k in rest):
            raise IndexError("rows read from disk take integers or slices on the other axes")
        row_axes = 1 if isinstance(first, slice) else np.ndim(first)
        return out[(slice(None),) * row_axes + tuple(rest)]

    def copy_to(self, dest: Path) -> None:
        """Write the ``.npy`` file (header included) to ``dest``, from the open file."""
        self._file.copy_to(dest)

    def close(self) -> None:
        self._file.close()


def save_npy(path: Path, array) -> None:
    """``np.save``, copying the file of an array read by rows rather than reading it into memory."""
    if isinstance(array, NpyRows):
        array.copy_to(path)
    else:
        np.save(path, array)


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


class CsrRows:
    """A CSR matrix saved by :func:`save_csr` whose rows are read with ``pread`` when indexed.

    Only ``indptr`` is held in memory (8 bytes a row); ``matrix[rows]`` (an integer, a slice or an
    array of rows, adjacent rows read together) gives a ``scipy.sparse.csr_matrix`` of those rows,
    like slicing the matrix would, and ``tocsr()`` the whole matrix.
    """

    def __init__(self, build: Path, name: str):
        self.data, self.indices = (NpyRows(build / f"{name}.{part}.npy") for part in ("data", "indices"))
        self.indptr = np.load(build / f"{name}.indptr.npy")
        self.shape: tuple[int, int] = tuple(int(v) for v in np.load(build / f"{name}.shape.npy"))
        self.dtype = self.data.dtype
        if len(self.indptr) != self.shape[0] + 1 or int(self.indptr[-1]) > len(self.data):
            raise ValueError(f"{build / name}: indptr disagrees with the matrix's shape or data")

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def _read(self, wanted: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> sparse.csr_matrix:
        """The ``wanted`` rows, given as runs of adjacent rows: one read of each part a run."""
        a, b = self.indptr[starts], self.indptr[stops]
        data, indices = self.data.spans(a, b), self.indices.spans(a, b)
        lengths = self.indptr[wanted + 1] - self.indptr[wanted]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(self.indices.dtype)
        return sparse.csr_matrix((data, indices, indptr), shape=(len(wanted), self.shape[1]))

    def __getitem__(self, key) -> sparse.csr_matrix:
        n = len(self.indptr) - 1
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            key = np.arange(start, stop, step)
        rows = np.atleast_1d(np.asarray(key, dtype=np.int64))
        if rows.ndim != 1:
            raise IndexError("rows read from disk are asked for by an integer, a slice or a 1-D array")
        wanted, where, starts, stops = _runs(rows, n)
        got = self._read(wanted, starts, stops)
        return got if where is None else got[where]

    def tocsr(self) -> sparse.csr_matrix:
        return self[:]

    def toarray(self) -> np.ndarray:
        return self.tocsr().toarray()



def save_csr(build: Path, name: str, matrix: "sparse.spmatrix | CsrRows") -> None:
    """A sparse matrix as plain ``.npy`` arrays, whose rows can be read in place (``.npz``'s cannot);
    one read by rows is copied from its open files."""
    if not isinstance(matrix, CsrRows):
        matrix = sparse.csr_matrix(matrix)
    for part in _CSR_PARTS:
        save_npy(build / f"{name}.{part}.npy", getattr(matrix, part))
    np.save(build / f"{name}.shape.npy", np.asarray(matrix.shape, dtype=np.int64))


def load_csr(build: Path, name: str, mmap: bool) -> "sparse.csr_matrix | CsrRows":
    """A saved sparse matrix: with ``mmap``, its rows read from disk when asked for (:class:`CsrRows`)."""
    if (build / f"{name}.npz").exists():  # builds saved before the arrays were split
        return sparse.load_npz(build / f"{name}.npz").tocsr()
    if mmap:
        return CsrRows(build, name)
    parts = [np.load(build / f"{name}.{part}.npy") for part in _CSR_PARTS]
    shape = tuple(int(v) for v in np.load(build / f"{name}.shape.npy"))
    return sparse.csr_matrix(tuple(parts), shape=shape, copy=False)
