"""What a saved index says about itself: its layout, contents, provenance and blend.

``manifest.json`` sits beside the files of each build. :class:`Manifest` is its typed form; it
reads manifests written before it existed (schema 1, an untyped dict with the same keys) and
writes schema :data:`SCHEMA_VERSION`. ``format_version`` is the version of the build's *files*
(a reader refuses another one); ``schema_version`` that of the manifest's own fields.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import platform
from typing import Any, Iterable

import numpy as np

from ..exceptions import IndexMismatch, InvalidParameter
from ..ingest import Trial
from .config import IndexConfig

__all__ = ["Manifest", "FORMAT_VERSION", "SCHEMA_VERSION", "trial_hash", "fingerprint", "package_versions"]

FORMAT_VERSION = 1
"""Version of the files of a build; a reader refuses a build of another version."""

SCHEMA_VERSION = 2
"""Version of the manifest's fields (1: the untyped dict written before :class:`Manifest`)."""


def trial_hash(trial: Trial) -> str:
    """A content hash of a trial record (its source file aside): equal hashes, same features."""
    record = trial.to_dict()
    record.pop("source", None)
    return hashlib.blake2b(json.dumps(record, sort_keys=True).encode(), digest_size=12).hexdigest()


def fingerprint(trials: Iterable[Trial]) -> str:
    """The hash of a set of trials, their order aside: two indexes of the same records share it."""
    return hashlib.sha256("\n".join(sorted(f"{t.nct_id}:{trial_hash(t)}" for t in trials)).encode()).hexdigest()


def package_versions() -> dict[str, str]:
    """The versions of the packages that shape an index's vectors and files."""
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


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class Manifest:
    """The typed ``manifest.json`` of a build.

    Attributes:
        config: the :class:`IndexConfig` the index was built with.
        dim: dimension of the field vectors.
        count: number of trials.
        fingerprint: :func:`fingerprint` of the trials.
        backend: name of the vector backend holding the trial vectors.
        structured_columns: the attributes the structured featurizer encodes.
        neighbours: length of the precomputed neighbour lists (0: none).
        built_at: when the build (or the update that made it) started, UTC ISO 8601.
        build_seconds: how long it took.
        versions: :func:`package_versions` of the build or of the last update.
        blend: the blend saved by ``fit-weights`` (``None``: the package's default blend).
        updated_from: the fingerprint of the index an update started from.
        update: what that update did (:meth:`~similarity.index.UpdateReport.to_dict`).
        engine: the engine that read and embedded the trials when it was not this process
            (``{"name": "ray", "ray": version, "workers": n, ...}``); None: a local build.
    """

    config: IndexConfig
    dim: int
    count: int
    fingerprint: str
    backend: str
    structured_columns: tuple[str, ...] = ()
    neighbours: int = 0
    built_at: str = dataclasses.field(default_factory=_now)
    build_seconds: float | None = None
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    blend: dict[str, Any] | None = None
    updated_from: str | None = None
    update: dict[str, Any] | None = None
    engine: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION
    schema_version: int = SCHEMA_VERSION

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def text_fields(self) -> tuple[str, ...]:
        return self.config.text_fields

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``model`` and ``text_fields`` repeated at the top for a reader's eye)."""
        out = dataclasses.asdict(self)
        out["structured_columns"] = list(self.structured_columns)
        out["model"] = self.model
        out["text_fields"] = list(self.text_fields)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        """Read a manifest of this schema or an older one.

        Raises:
            IndexMismatch: the build's files are of another format version, or a required field
                is missing or malformed.
        """
        if not isinstance(data, dict):
            raise IndexMismatch(f"a manifest is a JSON object, not {type(data).__name__}")
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexMismatch(
                f"index format {data.get('format_version')}, this version reads {FORMAT_VERSION}: "
                "rebuild it with related-trials build"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}  # schema 1's "model", "normalized"... are derived
        values["schema_version"] = SCHEMA_VERSION  # read into this schema; written back as such
        try:
            values["config"] = IndexConfig.from_saved(data["config"])
            values["structured_columns"] = tuple(values.get("structured_columns", ()))
            manifest = cls(**values)
            manifest.count, manifest.dim = int(manifest.count), int(manifest.dim)
        except (KeyError, TypeError, ValueError, InvalidParameter) as exc:
            raise IndexMismatch(f"malformed manifest ({type(exc).__name__}: {exc})") from None
        return manifest

    @classmethod
    def read(cls, path) -> "Manifest":
        """Read ``path`` (a ``manifest.json``); unreadable or malformed is :class:`IndexMismatch`."""
        try:
            data = json.loads(open(path, encoding="utf-8").read())
        except (OSError, ValueError) as exc:
            raise IndexMismatch(f"{path}: unreadable manifest ({exc})") from None
        try:
            return cls.from_dict(data)
        except IndexMismatch as exc:
            raise IndexMismatch(f"{path}: {exc}") from None
