"""The saved trial index: trials, their feature vectors and a vector backend, behind a manifest.

A directory given as ``--index DIR`` holds finished builds under ``DIR/builds/<id>/`` and a
``DIR/CURRENT`` file naming the one in use. A build is written completely into a fresh build
directory and only then does ``CURRENT`` switch to it (write to a temporary file, ``os.replace``):
a crash mid-build leaves the previous index in use and untouched, and a half-written build
is never picked up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import pickle
import json
import logging
import os
import platform
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import joblib
import numpy as np
from scipy import sparse

from .backends import BackendName, VectorBackend, load_backend, make_backend
from .exceptions import IndexMismatch, IndexNotFound, InvalidParameter, TrialNotFound
from .featurize import DEFAULT_MODEL, StructuredFeaturizer, TextFeaturizer
from .fields import (
    DEFAULT_TEXT_FIELDS,
    MULTI_VALUED_COLUMNS,
    TERM_FIELDS,
    STRUCTURED_COLUMNS,
    TextField,
    concatenated_text,
    structured_table,
    text_table,
)
from .lexical import BM25Vectorizer
from .neighbours import NeighbourLists, clustered_knn
from .store import RowLookup, TrialStore, read_records, trial_columns
from .trial import Trial

__all__ = ["IndexConfig", "TrialIndex", "build_index", "FORMAT_VERSION"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1

NEIGHBOURS_K = 300
"""Neighbours precomputed per trial by default where they pay: the ranker's default candidates."""

NEIGHBOURS_MIN = 20_000
"""``neighbours=None`` precomputes lists above this many trials, where a search costs milliseconds."""

EXACT_NEIGHBOURS_LIMIT = 50_000
"""Lists are exact (the backend's own search) up to this many trials, clustered k-NN above."""

DEFAULT_FIELD_WEIGHTS: dict[str, float] = {
    "title": 1.0,
    "brief_title": 1.0,
    "conditions": 1.0,
    "interventions": 0.5,
    "summary": 1.0,
    "description": 0.5,
    "criteria": 0.5,
    "outcomes": 0.5,
    "text": 1.0,
}


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """How an index is built. Everything here is part of the index's layout (see the manifest).

    Args:
        model: sentence-transformers model name or path.
        text_fields: the fields embedded one by one (see :mod:`similarity.fields`).
        field_weights: weight of each field in the trial vector that the backend searches.
        max_chunks: chunks embedded per long field (1 = the model's window only).
        chunk_words: words per chunk.
        backend: vector backend (``auto``: exact FAISS up to 200k trials, IVF-SQ8 above).
        term_fields: list fields embedded term by term (each distinct condition, keyword, MeSH
            term or intervention once for the whole corpus, a trial's field vector the mean of
            its terms'; default: conditions and interventions); the other fields are embedded as
            one text. Indexes saved before this option existed embedded every field as one text
            and load with ``()``.
        neighbours: length of the neighbour list precomputed for each trial (0: none; None:
            :data:`NEIGHBOURS_K` above :data:`NEIGHBOURS_MIN` trials, none below).
    """

    model: str = DEFAULT_MODEL
    text_fields: tuple[str, ...] = tuple(f.value for f in DEFAULT_TEXT_FIELDS)
    field_weights: tuple[float, ...] | None = None
    max_chunks: int = 1
    chunk_words: int = 160
    backend: BackendName = "auto"
    term_fields: tuple[str, ...] = tuple(f.value for f in TERM_FIELDS)
    neighbours: int | None = None

    def __post_init__(self):
        known = [f.value for f in TextField]
        unknown = [f for f in (*self.text_fields, *self.term_fields) if not isinstance(f, TextField) and f not in known]
        if unknown:
            raise InvalidParameter(f"unknown text field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(known)}")
        if not self.text_fields:
            raise InvalidParameter("text_fields must name at least one field")
        fields = tuple(TextField(f).value for f in self.text_fields)
        object.__setattr__(self, "text_fields", fields)
        terms = tuple(TextField(f).value for f in self.term_fields)
        allowed = (TextField.CONDITIONS.value, TextField.INTERVENTIONS.value, TextField.OUTCOMES.value)
        if not set(terms) <= set(allowed):
            raise InvalidParameter(f"term_fields must be among {allowed} (list fields); got {terms}")
        object.__setattr__(self, "term_fields", terms)
        if self.neighbours is not None and self.neighbours < 0:
            raise InvalidParameter(f"neighbours must be >= 0 or None (auto), got {self.neighbours}")
        weights = self.field_weights
        if weights is None:
            weights = tuple(DEFAULT_FIELD_WEIGHTS[f] for f in fields)
        if len(weights) != len(fields) or any(w < 0 for w in weights) or not sum(weights):
            raise InvalidParameter(
                f"field_weights must be {len(fields)} non-negative numbers, not all 0; got {weights}"
            )
        object.__setattr__(self, "field_weights", tuple(float(w) for w in weights))

    def layout(self) -> dict[str, Any]:
        """The settings a saved index must share with the code that reads it."""
        return {
            "model": self.model,
            "text_fields": list(self.text_fields),
            "max_chunks": self.max_chunks,
            "chunk_words": self.chunk_words,
            "term_fields": [f for f in self.term_fields if f in self.text_fields],
        }

    def term_columns(self) -> tuple[int, ...]:
        """Positions in ``text_fields`` of the fields embedded term by term."""
        return tuple(j for j, f in enumerate(self.text_fields) if f in self.term_fields)


def _trial_hash(trial: Trial) -> str:
    record = trial.to_dict()
    record.pop("source", None)
    return hashlib.blake2b(json.dumps(record, sort_keys=True).encode(), digest_size=12).hexdigest()


def _versions() -> dict[str, str]:
    import faiss
    import sentence_transformers
    import sklearn
    import torch

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "scikit-learn": sklearn.__version__,
        "sentence-transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
    }


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the block."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _remove_leftovers(builds: Path) -> None:
    """Remove the hidden ``.<stamp>-*`` directories of saves that died (call under the lock)."""
    for leftover in builds.iterdir():
        if leftover.name.startswith(".") and leftover.is_dir():
            logger.info("removing %s, left by a save that did not finish", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def _current_name(path: Path) -> str | None:
    try:
        return (path / "CURRENT").read_text().strip() or None
    except OSError:
        return None


def _umask() -> int:
    # Python can only read the umask by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
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


class TrialIndex:
    """Trials with their field vectors, structured and lexical features, and a vector backend.

    Row ``i`` of every array belongs to ``trials[i]``; the backend stores row numbers as ids.
    A loaded index reads its trial records from disk on demand (:class:`~similarity.store.TrialStore`)
    and keeps in RAM only ``columns``, the compact attributes that filters and signals read for
    many rows (:func:`~similarity.store.trial_columns`).
    """

    def __init__(
        self,
        *,
        config: IndexConfig,
        trials: Sequence[Trial],
        field_vectors: np.ndarray,
        structured: sparse.csr_matrix,
        structured_featurizer: StructuredFeaturizer,
        lexical: sparse.csr_matrix,
        lexical_vectorizer: BM25Vectorizer,
        backend: VectorBackend,
        manifest: dict[str, Any],
        path: Path | None = None,
        columns: dict[str, np.ndarray] | None = None,
        lexical_norms: np.ndarray | None = None,
    ):
        self.config = config
        self.trials = trials if isinstance(trials, TrialStore) else list(trials)
        self.columns = columns if columns is not None else trial_columns(self.trials)
        self.field_vectors = field_vectors
        self.structured = structured
        self.structured_featurizer = structured_featurizer
        self.lexical = lexical
        self.lexical_vectorizer = lexical_vectorizer
        self.backend = backend
        self.manifest = manifest
        self.path = path
        self.rows = RowLookup(self.columns["nct_id"])
        self._text_featurizer: TextFeaturizer | None = None
        self._lexical_norms = lexical_norms

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
        return self.manifest["fingerprint"]

    def text_featurizer(self, cache_dir: str | None = None) -> TextFeaturizer:
        """The index's text featurizer, its model loaded on first use (for documents not indexed)."""
        if self._text_featurizer is None:
            featurizer = TextFeaturizer(
                self.config.model,
                max_chunks=self.config.max_chunks,
                chunk_words=self.config.chunk_words,
                term_columns=self.config.term_columns(),
                cache_dir=cache_dir,
            )
            self._text_featurizer = featurizer.fit(np.empty((1, len(self.config.text_fields)), dtype=object))
        return self._text_featurizer

    def trial_vectors(self, field_vectors: np.ndarray) -> np.ndarray:
        """Combine per-field unit vectors ``(n, F, d)`` into one unit vector per trial."""
        weights = np.asarray(self.config.field_weights, dtype=np.float32)
        combined = np.einsum("nfd,f->nd", field_vectors.astype(np.float32), weights)
        return combined / np.maximum(np.linalg.norm(combined, axis=1, keepdims=True), 1e-12)

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the index under ``path`` atomically and make it current; returns the build dir.

        One save at a time per directory (an exclusive ``flock`` on ``path/.lock``). Under the lock,
        hidden build directories left by killed saves are removed first; after the switch, every
        finished build other than the new one and the one ``CURRENT`` named before is removed (a
        server that has not reloaded yet keeps reading the previous one).
        """
        path = Path(path)
        (path / "builds").mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(path / ".lock"):
            _remove_leftovers(path / "builds")
            previous = _current_name(path)
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
            tmp = Path(tempfile.mkdtemp(prefix=f".{stamp}-", dir=path / "builds"))
            try:
                os.chmod(tmp, 0o755 & ~_umask())  # mkdtemp makes it 0700: readable by us alone
                self._write_files(tmp)
                final = path / "builds" / tmp.name.lstrip(".")
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            _fsync_dir(path / "builds")
            pointer = path / ".CURRENT.tmp"
            pointer.write_text(final.name)
            with open(pointer, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(pointer, path / "CURRENT")
            _fsync_dir(path)
            self.path = final
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
        np.save(build / "field_vectors.npy", self.field_vectors)
        _save_csr(build, "structured", self.structured)
        _save_csr(build, "lexical", self.lexical)
        np.save(build / "lexical_norms.npy", self.lexical_norms)
        joblib.dump(
            {"structured": self.structured_featurizer, "lexical": self.lexical_vectorizer},
            build / "encoders.joblib",
        )
        self.backend.save(build / "backend")
        (build / "manifest.json").write_text(json.dumps(self.manifest, indent=2))
        for f in build.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        for d in [build, *(p for p in build.rglob("*") if p.is_dir())]:
            _fsync_dir(d)

    @classmethod
    def load(cls, path: str | Path, *, expect: IndexConfig | None = None, mmap: bool = True) -> "TrialIndex":
        """Load the current build under ``path``.

        With ``mmap`` (the default) trial records are read from disk when asked for and the arrays
        are memory-mapped: a few hundred MB of private memory at 0.6M trials. ``mmap=False`` holds
        everything in RAM (~13 KB per trial).

        Raises:
            IndexNotFound: no finished build is there.
            IndexMismatch: the build has another format version, or another layout than ``expect``.
        """
        path = Path(path)
        try:
            build = path / "builds" / (path / "CURRENT").read_text().strip()
        except OSError:
            raise IndexNotFound(f"no index in {path} (build one with: related-trials build SOURCE --index {path})") from None
        try:
            manifest = json.loads((build / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise IndexMismatch(f"{build}: unreadable manifest ({exc})") from None
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexMismatch(
                f"{path} has index format {manifest.get('format_version')}, this version reads "
                f"{FORMAT_VERSION}: rebuild it with related-trials build"
            )
        saved = {"term_fields": [], **manifest["config"]}  # builds older than term_fields embedded whole fields
        config = IndexConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
        if expect is not None and expect.layout() != config.layout():
            diff = {k: (v, expect.layout()[k]) for k, v in config.layout().items() if expect.layout()[k] != v}
            raise IndexMismatch(
                f"{path} was built with another layout: "
                + "; ".join(f"{k} is {a!r}, expected {b!r}" for k, (a, b) in diff.items())
            )
        try:
            index = cls._read_build(build, config, manifest, mmap)
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
        if len(index) != manifest["count"] or index.backend.count != manifest["count"]:
            raise IndexMismatch(f"{build}: holds {len(index)} trials, manifest says {manifest['count']}")
        return index

    @classmethod
    def _read_build(cls, build: Path, config: IndexConfig, manifest: dict[str, Any], mmap: bool) -> "TrialIndex":
        """The files of ``build`` into an index (``load`` turns a damaged file into IndexMismatch)."""
        trials = TrialStore(build / "trials.jsonl") if mmap else list(read_records(build / "trials.jsonl"))
        try:
            with np.load(build / "columns.npz") as saved_columns:
                columns = {k: saved_columns[k] for k in saved_columns.files}
        except FileNotFoundError:  # builds older than the columns: read every record once
            columns = trial_columns(iter(trials))
        encoders = joblib.load(build / "encoders.joblib")
        norms = build / "lexical_norms.npy"  # builds before the lexical cosine compute them on first use
        return cls(
            config=config,
            trials=trials,
            field_vectors=np.load(build / "field_vectors.npy", mmap_mode="r" if mmap else None),
            structured=_load_csr(build, "structured", mmap),
            structured_featurizer=encoders["structured"],
            lexical=_load_csr(build, "lexical", mmap),
            lexical_vectorizer=encoders["lexical"],
            backend=load_backend(build / "backend"),
            manifest=manifest,
            path=build,
            columns=columns,
            lexical_norms=np.load(norms, mmap_mode="r" if mmap else None) if norms.exists() else None,
        )


_CSR_PARTS = ("data", "indices", "indptr")


def _save_csr(build: Path, name: str, matrix: sparse.spmatrix) -> None:
    """A sparse matrix as plain ``.npy`` arrays, which load memory-mapped (``.npz`` cannot)."""
    matrix = sparse.csr_matrix(matrix)
    for part in _CSR_PARTS:
        np.save(build / f"{name}.{part}.npy", getattr(matrix, part))
    np.save(build / f"{name}.shape.npy", np.asarray(matrix.shape, dtype=np.int64))


def _load_csr(build: Path, name: str, mmap: bool) -> sparse.csr_matrix:
    if (build / f"{name}.npz").exists():  # builds saved before the arrays were split
        return sparse.load_npz(build / f"{name}.npz").tocsr()
    parts = [np.load(build / f"{name}.{part}.npy", mmap_mode="r" if mmap else None) for part in _CSR_PARTS]
    shape = tuple(int(v) for v in np.load(build / f"{name}.shape.npy"))
    return sparse.csr_matrix(tuple(parts), shape=shape, copy=False)


def neighbour_lists(backend: VectorBackend, vectors: np.ndarray, k: int, *, progress: bool = False) -> NeighbourLists:
    """Each stored vector's ``k`` nearest others: from the backend's own search up to
    :data:`EXACT_NEIGHBOURS_LIMIT` vectors (with an exact backend, the very rows a live search
    returns), from clustered all-pairs k-NN above (recall@10 ~0.99, minutes at a million)."""
    if len(vectors) > EXACT_NEIGHBOURS_LIMIT:
        return NeighbourLists(clustered_knn(vectors, k, n_probe=6, progress=progress), method="clustered")
    return NeighbourLists.compute(backend, vectors, k, progress=progress)


def build_index(
    trials: Sequence[Trial],
    config: IndexConfig | None = None,
    *,
    cache_dir: str | None = None,
    progress: bool = False,
) -> TrialIndex:
    """Featurize ``trials`` and put them in a new in-memory index (save it with ``.save``)."""
    config = config or IndexConfig()
    if not trials:
        raise InvalidParameter("cannot build an index of zero trials")
    ids = [t.nct_id for t in trials]
    if len(set(ids)) != len(ids):
        raise InvalidParameter("trials hold duplicate NCT IDs; load them with load_trials to dedupe")
    started = dt.datetime.now(dt.timezone.utc)
    texts = text_table(trials, config.text_fields)
    featurizer = TextFeaturizer(
        config.model,
        max_chunks=config.max_chunks,
        chunk_words=config.chunk_words,
        term_columns=config.term_columns(),
        cache_dir=cache_dir,
        show_progress_bar=progress,
    ).fit(texts)
    n_fields = len(config.text_fields)
    field_vectors = featurizer.transform(texts).reshape(len(trials), n_fields, featurizer.dim_)
    structured_featurizer = StructuredFeaturizer(STRUCTURED_COLUMNS, MULTI_VALUED_COLUMNS)
    structured = structured_featurizer.fit_transform(structured_table(trials))
    lexical_vectorizer = BM25Vectorizer()
    lexical = lexical_vectorizer.fit_transform([concatenated_text(t) for t in trials])
    backend = make_backend(config.backend, featurizer.dim_, len(trials))
    field_vectors = field_vectors.astype(np.float16)
    fingerprint = hashlib.sha256("\n".join(sorted(f"{t.nct_id}:{_trial_hash(t)}" for t in trials)).encode()).hexdigest()
    manifest = {
        "format_version": FORMAT_VERSION,
        "config": dataclasses.asdict(config),
        "model": config.model,
        "dim": featurizer.dim_,
        "normalized": True,
        "text_fields": list(config.text_fields),
        "structured_columns": list(STRUCTURED_COLUMNS),
        "backend": backend.name,
        "count": len(trials),
        "fingerprint": fingerprint,
        "built_at": started.isoformat(timespec="seconds"),
        "build_seconds": None,
        "versions": _versions(),
    }
    index = TrialIndex(
        config=config,
        trials=trials,
        field_vectors=field_vectors,
        structured=structured,
        structured_featurizer=structured_featurizer,
        lexical=lexical,
        lexical_vectorizer=lexical_vectorizer,
        backend=backend,
        manifest=manifest,
    )
    # Stored vectors come from the stored float16 field vectors, like every query vector does.
    vectors = index.trial_vectors(field_vectors)
    backend.add(vectors, np.arange(len(trials)))
    k = config.neighbours
    if k is None:
        k = NEIGHBOURS_K if len(trials) > NEIGHBOURS_MIN else 0
    if k:
        backend.neighbours = neighbour_lists(backend, vectors, min(k, len(trials) - 1) or 1, progress=progress)
    manifest["neighbours"] = backend.neighbours.k if backend.neighbours is not None else 0
    from .blend import default_blend
    from .signals import SignalComputer

    manifest["blend"] = default_blend(SignalComputer(index).names).to_dict()
    manifest["build_seconds"] = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 2)
    return index
