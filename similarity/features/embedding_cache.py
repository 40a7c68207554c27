"""A persistent cache of text embeddings keyed by model and text hash.

Condition names, intervention names and MeSH terms repeat across thousands of trials, and a rebuild
re-reads mostly unchanged trials: both are served from here instead of the model. SQLite keeps the
cache consistent when a process dies mid-write and lets several processes share it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Iterable

import numpy as np

__all__ = ["EmbeddingCache", "text_key"]


def text_key(model_id: str, text: str) -> bytes:
    """The cache key of ``text`` embedded by ``model_id``."""
    return hashlib.blake2b(f"{model_id}\x00{text}".encode("utf-8"), digest_size=16).digest()


class EmbeddingCache:
    """Embeddings stored in an SQLite file, float32 vectors keyed by :func:`text_key`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, vector BLOB NOT NULL)"
        )

    def get_many(self, keys: Iterable[bytes], dim: int) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``keys`` (vectors of another dimension are ignored)."""
        found: dict[bytes, np.ndarray] = {}
        keys = list(keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", chunk
            )
            for key, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape[0] == dim:
                    found[key] = vector
        return found

    def put_many(self, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO embeddings (key, vector) VALUES (?, ?)",
                ((k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items),
            )

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]

    def close(self) -> None:
        self._conn.close()

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])
