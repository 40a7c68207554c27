"""Related lists stored with a build: each trial's default list, serialised once, read by slicing.

A registry page shows the same related list to everyone until the index changes, so the ranking
of an indexed trial's unfiltered list is done once, at build (or update) time, and the service
answers it by reading bytes: each list item is its JSON object, the items of all trials lie end
to end in one file, and ``offsets[row, i]`` is where item ``i`` of ``row`` starts
(``offsets[row, count]`` where its last item ends). A request for the first ``k`` items is one
``pread`` of that span (the file is ~8 KB a trial, 4.9 GB at 600,000 trials: read like the records
of ``trials.jsonl``, it sits in the page cache, not in a worker's memory; memory-mapping it would map
a whole large folio of neighbouring lists into the worker on each request). Which ranker settings
made the lists is kept beside them (``settings``), so a ranker with another blend or diversity never
answers from them.

Files, in ``BUILD/lists/``: ``items.bin`` (UTF-8 JSON objects, no separators), ``offsets.npy``
(``int64``, ``(n, k + 1)``; a trial with fewer than ``k`` related trials repeats its end offset),
``meta.json`` (``k``, ``settings``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..exceptions import IndexMismatch, InvalidParameter
from ._files import NpyRows, ReadOnlyFile, save_npy

__all__ = ["StoredLists"]

DIRNAME = "lists"


def _count(offsets: np.ndarray) -> int:
    """Items in a list from its row of offsets (a short list repeats its end offset)."""
    return int(np.searchsorted(offsets, offsets[-1], side="left"))


class StoredLists:
    """Serialised related lists of every row of an index.

    Args:
        items: the JSON bytes of all items, end to end (in memory), or the path of the file
            that holds them (read a list at a time with ``pread``).
        offsets: ``(n, k + 1)`` byte offsets of each row's items into ``items``.
        settings: what made the lists (the ranker's blend and diversity, as JSON-able data).
    """

    def __init__(self, items: np.ndarray | bytes | str | Path, offsets: np.ndarray, settings: dict[str, Any]):
        self._file: ReadOnlyFile | None = None
        if isinstance(items, (str, Path)):
            self._file = ReadOnlyFile(items)
            self.data = None
        else:
            self.data = np.frombuffer(items, dtype=np.uint8) if isinstance(items, (bytes, bytearray)) else items
        self.offsets = offsets
        self.settings = settings
        if offsets.ndim != 2 or offsets.shape[1] < 2:
            raise InvalidParameter(f"offsets must be (n, k + 1) with k >= 1, got shape {offsets.shape}")

    def _bytes(self, start: int, stop: int) -> bytes:
        return self._file.read(start, stop) if self._file is not None else bytes(self.data[start:stop])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if isinstance(self.offsets, NpyRows):
            self.offsets.close()

    @property
    def k(self) -> int:
        """How many items each list holds (at most)."""
        return self.offsets.shape[1] - 1

    def __len__(self) -> int:
        return len(self.offsets)

    def count(self, row: int) -> int:
        """How many items the list of ``row`` holds (fewer than ``k`` in a small index)."""
        return _count(np.asarray(self.offsets[row]))

    def items_json(self, row: int, k: int) -> bytes:
        """The first ``k`` items of ``row``'s list as a JSON array's inside (``{...},{...}``)."""
        if k > self.k:
            raise InvalidParameter(f"the stored lists hold {self.k} items, {k} asked")
        span, ends = self._span(row, k)
        return b",".join(span[ends[i]:ends[i + 1]] for i in range(len(ends) - 1))

    def row_bytes(self, row: int) -> tuple[bytes, list[int]]:
        """All items of ``row`` end to end, and where each ends in them."""
        span, ends = self._span(row, self.k)
        return span, ends[1:]

    def _span(self, row: int, k: int) -> tuple[bytes, list[int]]:
        """The bytes of ``row``'s first ``k`` items or fewer (one read of its offsets, one of its
        items), and their offsets into them."""
        offsets = np.asarray(self.offsets[row], dtype=np.int64)
        ends = offsets[:min(k, _count(offsets)) + 1]
        start = int(ends[0])
        return self._bytes(start, int(ends[-1])), (ends - start).tolist()

    def items(self, row: int, k: int) -> list[dict[str, Any]]:
        """The first ``k`` items of ``row``'s list, parsed."""
        return json.loads(b"[" + self.items_json(row, k) + b"]")

    @classmethod
    def from_items(cls, lists: Sequence[Sequence[bytes]], k: int, settings: dict[str, Any]) -> "StoredLists":
        """Lists given row by row as the JSON bytes of their items (at most ``k`` each)."""
        offsets = np.zeros((len(lists), k + 1), dtype=np.int64)
        position = 0
        parts = []
        for row, items in enumerate(lists):
            if len(items) > k:
                raise InvalidParameter(f"row {row} has {len(items)} items, more than k={k}")
            offsets[row, 0] = position
            for i, item in enumerate(items):
                parts.append(item)
                position += len(item)
                offsets[row, i + 1] = position
            offsets[row, len(items) + 1:] = position
        return cls(b"".join(parts), offsets, settings)

    # ----------------------------------------------------------------- persistence
    def save(self, build: Path) -> None:
        folder = Path(build) / DIRNAME
        folder.mkdir()
        if self._file is not None:
            self._file.copy_to(folder / "items.bin")
        else:
            with open(folder / "items.bin", "wb") as fh:
                fh.write(memoryview(np.ascontiguousarray(self.data)))
        save_npy(folder / "offsets.npy", self.offsets)
        (folder / "meta.json").write_text(json.dumps({"k": self.k, "settings": self.settings}, indent=2))

    @classmethod
    def load(cls, build: Path, *, mmap: bool = True, count: int | None = None) -> "StoredLists | None":
        """The lists of ``build``, or ``None`` where it has none; IndexMismatch where they disagree
        with the build (``count`` rows). ``mmap``: offsets and items read from their files on request
        (else both read into memory)."""
        folder = Path(build) / DIRNAME
        if not (folder / "meta.json").exists():
            return None
        meta = json.loads((folder / "meta.json").read_text())
        offsets = NpyRows(folder / "offsets.npy") if mmap else np.load(folder / "offsets.npy")
        size = (folder / "items.bin").stat().st_size
        items = folder / "items.bin" if mmap else np.fromfile(folder / "items.bin", dtype=np.uint8)
        if offsets.shape[1] != int(meta["k"]) + 1 or (count is not None and len(offsets) != count) or (
                len(offsets) and int(offsets[-1, -1]) != size):
            raise IndexMismatch(f"{folder}: the stored related lists disagree with the build; rebuild it")
        return cls(items, offsets, meta["settings"])
