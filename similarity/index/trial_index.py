"""The saved trial index: trials, their feature vectors and a vector backend, behind a manifest.

A directory given as ``--index DIR`` holds finished builds under ``DIR/builds/<id>/`` and a
``DIR/CURRENT`` file naming the one in use. A build is written completely into a fresh build
directory and only then does ``CURRENT`` switch to it (write to a temporary file, ``os.replace``):
a crash mid-build leaves the previous index in use and untouched, and a half-written build
is never picked up. :mod:`similarity.index.build` assembles an index; this module holds, saves
and loads one.

An index URL (``postgresql://...``) instead of a directory saves into, and loads from, a
PostgreSQL database with pgvector (:mod:`similarity.index.postgres`): each save a new schema,
switched to in one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import joblib
import numpy as np
from scipy import sparse

from ..exceptions import IndexMismatch, IndexNotFound, InvalidParameter, TrialNotFound
from ..features import BM25Vectorizer, StructuredFeaturizer, TextFeaturizer
from ..ingest import Trial
from ._files import current_name, exclusive_lock, fsync_dir, load_csr, remove_leftovers, save_csr, umask
from .backends import VectorBackend, load_backend
from .config import IndexConfig
from .manifest import Manifest
from .postgres.connection import is_index_url
from .quantized import load_field_vectors, save_field_vectors
from .store import COLUMNS, RowLookup, TrialStore, read_records, trial_columns
from .stored_lists import StoredLists

__all__ = ["TrialIndex"]

logger = logging.getLogger(__name__)


class TrialIndex:
    """Trials with their field vectors, structured and lexical features, and a vector backend.

    Row ``i`` of every array belongs to ``trials[i]``; the backend stores row numbers as ids.
    A loaded index reads its trial records from disk on demand (:class:`~similarity.index.store.TrialStore`)
    and keeps in RAM only ``columns``, the compact attributes that filters and signals read for
    many rows (:func:`~similarity.index.store.trial_columns`).
    """

    def __init__(
        self,
        *,
        manifest: Manifest,
        trials: Sequence[Trial],
        field_vectors: np.ndarray,
        structured: sparse.csr_matrix,
        structured_featurizer: StructuredFeaturizer,
        lexical: sparse.csr_matrix,
        lexical_vectorizer: BM25Vectorizer,
        backend: VectorBackend,
        path: Path | None = None,
        columns: dict[str, np.ndarray] | None = None,
        lexical_norms: np.ndarray | None = None,
        related_lists: StoredLists | None = None,
        build: str | None = None,
    ):
        self.manifest = manifest
        self.trials = trials if isinstance(trials, TrialStore) else list(trials)
        self.columns = columns if columns is not None else trial_columns(self.trials)
        self.field_vectors = field_vectors
        self.structured = structured
        self.structured_featurizer = structured_featurizer
        self.lexical = lexical
        self.lexical_vectorizer = lexical_vectorizer
        self.backend = backend
        self.path = path
        self._build = build
        self.rows = RowLookup(self.columns["nct_id"])
        self._text_featurizer: TextFeaturizer | None = None
        self._lexical_norms = lexical_norms
        self.related_lists = related_lists
        """Each trial's default related list, stored with the build (:mod:`.stored_lists`), or None."""

    @property
    def build(self) -> str | None:
        """The name of the saved build this index is (its directory's name, or its PostgreSQL
        schema); None for an index not saved or loaded."""
        return self._build or (self.path.name if self.path else None)

    @property
    def config(self) -> IndexConfig:
        """How the index was built (its manifest's config)."""
        return self.manifest.config

    @property
    def lexical_norms(self) -> np.ndarray:
        """The L2 norm of each row's BM25 weights (the lexical cosine's denominators).

        Written with every build, so a served index maps ``n`` floats instead of reading the whole
        lexical matrix; computed once here for an index built in memory or saved before them.
        """
        if self._lexical_norms is None:
            data = np.square(np.asarray(self.lexical.data, dtype=np.float64))
            indptr = self.lexical.indptr
            sums = np.add.reduceat(data, indptr[:-1]) if len(data) else np.zeros(self.lexical.shape[0])
            self._lexical_norms = np.sqrt(np.where(np.diff(indptr) > 0, sums, 0.0)).astype(np.float32)
        return self._lexical_norms

    def __len__(self) -> int:
        return len(self.trials)

    def __contains__(self, nct_id: str) -> bool:
        return nct_id in self.rows

    def row(self, nct_id: str) -> int:
        """The row of ``nct_id``; raises :class:`TrialNotFound` when the index lacks it."""
        try:
            return self.rows[nct_id]
        except KeyError:
            raise TrialNotFound(nct_id) from None

    def trial(self, nct_id: str) -> Trial:
        return self.trials[self.row(nct_id)]

    def nct_id(self, row: int) -> str:
        """The NCT ID of ``row`` (from the compact columns: no record is read)."""
        return self.columns["nct_id"][row].decode("ascii")

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    def text_featurizer(self, cache_dir: str | None = None) -> TextFeaturizer:
        """The index's text featurizer, its model loaded on first use (for documents not indexed)."""
        if self._text_featurizer is None:
            featurizer = self.config.text_featurizer(cache_dir=cache_dir)
            self._text_featurizer = featurizer.fit(np.empty((1, len(self.config.text_fields)), dtype=object))
        return self._text_featurizer

    def trial_vectors(self, field_vectors: np.ndarray) -> np.ndarray:
        """Combine per-field unit vectors ``(n, F, d)`` into one unit vector per trial."""
        weights = np.asarray(self.config.field_weights, dtype=np.float32)
        combined = np.einsum("nfd,f->nd", np.asarray(field_vectors, dtype=np.float32), weights)
        return combined / np.maximum(np.linalg.norm(combined, axis=1, keepdims=True), 1e-12)

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path | str:
        """Write the index under ``path`` atomically and make it current; returns the build dir.

        ``path`` may be a PostgreSQL URL: the index is written into a new schema that becomes
        current in the same transaction (:func:`~similarity.index.postgres.save_build`); returns
        ``"URL (build SCHEMA)"``, the password masked.

        One save at a time per directory (an exclusive ``flock`` on ``path/.lock``). Under the lock,
        hidden build directories left by killed saves are removed first; after the switch, every
        finished build other than the new one and the one ``CURRENT`` named before is removed (a
        server that has not reloaded yet keeps reading the previous one).
        """
        if is_index_url(path):
            from .postgres import redact, save_build

            self._build, self.path = save_build(self, path), None
            return f"{redact(path)} (build {self._build})"
        path = Path(path)
        (path / "builds").mkdir(parents=True, exist_ok=True)
        with exclusive_lock(path / ".lock"):
            remove_leftovers(path / "builds")
            previous = current_name(path)
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
            tmp = Path(tempfile.mkdtemp(prefix=f".{stamp}-", dir=path / "builds"))
            try:
                os.chmod(tmp, 0o755 & ~umask())  # mkdtemp makes it 0700: readable by us alone
                self._write_files(tmp)
                final = path / "builds" / tmp.name.lstrip(".")
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            fsync_dir(path / "builds")
            pointer = path / ".CURRENT.tmp"
            pointer.write_text(final.name)
            with open(pointer, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(pointer, path / "CURRENT")
            fsync_dir(path)
            self.path, self._build = final, None
            keep = {final.name, previous}
            for old in (path / "builds").iterdir():
                if old.is_dir() and not old.name.startswith(".") and old.name not in keep:
                    shutil.rmtree(old, ignore_errors=True)
        return final

    def _write_files(self, build: Path) -> None:
        """Every file of the index into the (new, empty) directory ``build``, each fsynced."""
        with open(build / "trials.jsonl", "w", encoding="utf-8") as fh:
            for trial in self.trials:
                fh.write(json.dumps(trial.to_dict(), ensure_ascii=False) + "\n")
        np.savez(build / "columns.npz", **self.columns)
        save_field_vectors(build, self.field_vectors)
        save_csr(build, "structured", self.structured)
        save_csr(build, "lexical", self.lexical)
        np.save(build / "lexical_norms.npy", self.lexical_norms)
        joblib.dump(
            {"structured": self.structured_featurizer, "lexical": self.lexical_vectorizer},
            build / "encoders.joblib",
        )
        self.backend.save(build / "backend")
        if self.related_lists is not None:
            if len(self.related_lists) != len(self):
                raise InvalidParameter(f"the stored related lists hold {len(self.related_lists)} rows, the index {len(self)}")
            self.related_lists.save(build)
        (build / "manifest.json").write_text(json.dumps(self.manifest.to_dict(), indent=2))
        for f in build.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        for d in [build, *(p for p in build.rglob("*") if p.is_dir())]:
            fsync_dir(d)

    @classmethod
    def load(cls, path: str | Path, *, expect: IndexConfig | None = None, mmap: bool = True) -> "TrialIndex":
        """Load the current build under ``path``.

        With ``mmap`` (the default) trial records, stored lists and the rows of the arrays a
        ranking re-scores (field vectors, BM25 and structured rows, neighbour lists) are read from
        disk when asked for (``pread``; only the lexical norms are memory-mapped): under 600 MB
        resident at 0.6M trials after 10,000 related lists. ``mmap=False`` holds everything in RAM (~13 KB per trial).

        Raises:
            IndexNotFound: no finished build is there.
            IndexMismatch: the build has another format version, or another layout than ``expect``.
        """
        if is_index_url(path):
            return cls._load_postgres(path, expect)
        path = Path(path)
        try:
            build = path / "builds" / (path / "CURRENT").read_text().strip()
        except OSError:
            raise IndexNotFound(f"no index in {path} (build one with: related-trials build SOURCE --index {path})") from None
        manifest = Manifest.read(build / "manifest.json")
        _check_layout(manifest, expect, path)
        try:
            index = cls._read_build(build, manifest, mmap)
        except IndexMismatch:
            raise
        except (OSError, ValueError, TypeError, KeyError, AttributeError, EOFError, RuntimeError, zipfile.BadZipFile,
                pickle.UnpicklingError) as exc:
            raise IndexMismatch(
                f"{build}: a file of the build is unreadable ({type(exc).__name__}: {exc}); "
                "rebuild it with related-trials build"
            ) from None
        if len(index) != len(index.columns["nct_id"]):
            raise IndexMismatch(f"{build}: trials.jsonl and columns.npz disagree on the number of trials")
        if len(index) != manifest.count or index.backend.count != manifest.count:
            raise IndexMismatch(f"{build}: holds {len(index)} trials, manifest says {manifest.count}")
        return index

    @classmethod
    def _load_postgres(cls, url: str, expect: IndexConfig | None) -> "TrialIndex":
        from .postgres import open_build, redact

        found = open_build(url)
        try:
            _check_layout(found.manifest, expect, redact(url))
        except BaseException:
            found.close()
            raise
        index = cls(**found.parts(), build=found.schema)
        where = f"{redact(url)} (build {found.schema})"
        if len(index) != len(index.columns["nct_id"]) or len(index) != index.field_vectors.shape[0]:
            raise IndexMismatch(f"{where}: its tables disagree on the number of trials")
        if len(index) != found.manifest.count or index.backend.count != found.manifest.count:
            raise IndexMismatch(f"{where}: holds {len(index)} trials, manifest says {found.manifest.count}")
        return index

    @classmethod
    def _read_build(cls, build: Path, manifest: Manifest, mmap: bool) -> "TrialIndex":
        """The files of ``build`` into an index (``load`` turns a damaged file into IndexMismatch)."""
        trials = TrialStore(build / "trials.jsonl") if mmap else list(read_records(build / "trials.jsonl"))
        try:
            with np.load(build / "columns.npz") as saved_columns:
                columns = {k: saved_columns[k] for k in saved_columns.files}
        except FileNotFoundError:  # builds older than the columns: read every record once
            columns = trial_columns(iter(trials))
        if not set(COLUMNS) <= set(columns):  # builds older than some columns (e.g. the eligibility filters)
            logger.info("%s: adding the compact columns it lacks (one pass over the records)", build)
            columns = trial_columns(iter(trials))
        encoders = joblib.load(build / "encoders.joblib")
        norms = build / "lexical_norms.npy"  # builds before the lexical cosine compute them on first use
        return cls(
            manifest=manifest,
            trials=trials,
            field_vectors=load_field_vectors(build, mmap=mmap),
            structured=load_csr(build, "structured", mmap),
            structured_featurizer=encoders["structured"],
            lexical=load_csr(build, "lexical", mmap),
            lexical_vectorizer=encoders["lexical"],
            backend=load_backend(build / "backend"),
            path=build,
            columns=columns,
            lexical_norms=np.load(norms, mmap_mode="r" if mmap else None) if norms.exists() else None,
            related_lists=StoredLists.load(build, mmap=mmap, count=manifest.count),
        )


def _check_layout(manifest: Manifest, expect: IndexConfig | None, where) -> None:
    """IndexMismatch where ``manifest`` has another layout than ``expect`` (None: anything goes)."""
    config = manifest.config
    if expect is not None and expect.layout() != config.layout():
        diff = {k: (v, expect.layout()[k]) for k, v in config.layout().items() if expect.layout()[k] != v}
        raise IndexMismatch(
            f"{where} was built with another layout: "
            + "; ".join(f"{k} is {a!r}, expected {b!r}" for k, (a, b) in diff.items())
        )
