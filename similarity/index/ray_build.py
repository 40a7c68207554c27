"""The Ray Data engine of a build: reading, field texts and embedding spread over a Ray cluster.

Three Ray Data stages do what a local build does in this process:

1. **read**: the sources split into parts (whole files, runs of zip members), parsed by tasks
   (``flat_map``); the records come back in part order and go through the loaders' own tally and
   dedupe (:func:`~similarity.ingest.parts.collect_trials`), so the trials, skipped records and
   duplicates are those :func:`~similarity.ingest.load_trials` gives;
2. **texts**: each trial's field texts (``map_batches`` over tasks);
3. **embed**: ``map_batches`` over a fixed pool of actors, each loading the sentence model once
   and embedding a batch of trials with the layout's own :class:`~similarity.features.TextFeaturizer`
   (the same chunks, terms, means and float16 rounding as a local build; the embedding cache is
   read and written by every actor, so it must sit on storage every node sees).

The vectors come back by row number and :func:`~similarity.index.build.assemble` does the rest
exactly as for a local build, so both give the same index. Stages run one after the other: an
actor pool holding every CPU then never starves the tasks of a stage beside it.

``ray`` is an optional dependency (``pip install -e '.[scale]'``), imported when an engine starts.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import socket
from typing import Any, Iterable, Sequence

import numpy as np

from ..exceptions import InvalidParameter
from ..features import text_table
from ..ingest import LoadReport, Trial
from ..ingest.parts import DEFAULT_MEMBERS_PER_PART, collect_trials, read_part, source_parts
from .build import build_with
from .config import IndexConfig
from .trial_index import TrialIndex

__all__ = ["RayEngine", "build_index_ray", "DEFAULT_BATCH_SIZE"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
"""Trials per embedding batch (each brings its field texts: ~4 texts, more with term fields).
Measured in ``benchmarks/scale-ray.md``: see :mod:`scripts.scale_ray`."""

_ADDRESS = re.compile(r"^(auto|ray://[A-Za-z0-9.\-\[\]:]+:\d{1,5}|[A-Za-z0-9.\-\[\]:]+:\d{1,5})$")
_INSTALL_HINT = "pip install -e '.[scale]'"


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra of ray
    except ImportError:
        raise InvalidParameter(f"the Ray engine needs ray[data], which is not installed: {_INSTALL_HINT}") from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail at once where nothing listens at ``host:port`` (ray.init would retry for minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise InvalidParameter(
            f"cannot join the Ray cluster at {address!r}: nothing answers at {host}:{port} ({exc.strerror or exc})"
        ) from None


def _read(part: dict) -> list[dict]:
    """Stage 1: the records of one source part, each a row numbered in the part's order."""
    return [
        {"part": part["part"], "seq": seq, "record": pickle.dumps(record)}
        for seq, record in enumerate(read_part(pickle.loads(part["source"])))
    ]


def _texts(batch: dict[str, np.ndarray], fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Stage 2: the field texts of a batch of trials, one column per field (None where missing)."""
    table = text_table([pickle.loads(t) for t in batch["trial"]], fields)
    return {"row": batch["row"], **{f"text_{j}": table[:, j] for j in range(len(fields))}}


class _FieldEmbedder:
    """Stage 3: an actor that loads the model once and embeds batches of field texts."""

    def __init__(self, config: IndexConfig, cache_dir: str | None):
        self.fields = len(config.text_fields)
        self.featurizer = config.text_featurizer(cache_dir=cache_dir).fit(np.full((1, self.fields), None, dtype=object))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = np.empty((len(batch["row"]), self.fields), dtype=object)
        for j in range(self.fields):
            texts[:, j] = batch[f"text_{j}"]
        return {"row": batch["row"], "vectors": self.featurizer.transform(texts).astype(np.float16)}


class RayEngine:
    """A Ray session for builds: a local cluster started for the run, or an existing one joined.

    Use it as a context manager: a cluster it started is shut down on exit; from a joined cluster
    this process disconnects, leaving it running; a Ray session this process already had is left
    as it was.

    Args:
        address: ``auto``, ``host:port`` or ``ray://host:port`` of a running cluster; None starts a
            local cluster of ``workers`` CPUs (or uses the Ray session this process already has).
        workers: embedding actors (one CPU and one model each); default: the cluster's CPUs.
        batch_size: trials per embedding batch (:data:`DEFAULT_BATCH_SIZE`).
        members_per_part: zip members read per task.
        progress: show Ray Data's progress bars.

    Raises:
        InvalidParameter: a malformed or unreachable address, a bad worker count or batch size,
            more workers than the cluster has CPUs, or ``ray`` not installed.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        members_per_part: int = DEFAULT_MEMBERS_PER_PART,
        progress: bool = False,
    ):
        if address is not None and not _ADDRESS.match(address):
            raise InvalidParameter(
                f"Ray address must be 'auto', 'host:port' or 'ray://host:port', got {address!r}"
            )
        for name, value in (("workers", workers), ("batch_size", batch_size), ("members_per_part", members_per_part)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidParameter(f"Ray {name} must be an integer >= 1, got {value!r}")
        self.address = address
        self.workers = workers
        self.batch_size = batch_size
        self.members_per_part = members_per_part
        self.progress = progress
        self._own = False
        self._ray = None

    def __enter__(self) -> "RayEngine":
        ray = _ray()
        if self.address is None and ray.is_initialized():
            logger.info("using this process's Ray session")
        elif self.address is None:
            ray.init(num_cpus=self.workers or os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
            self._own = True
        else:
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
                self._own = True  # the connection: ray.shutdown() only disconnects from a joined cluster
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError, grpc errors...
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise InvalidParameter(
                    f"cannot join the Ray cluster at {self.address!r}: {type(exc).__name__}: {first}"
                ) from None
        self._ray = ray
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if self.workers is None:
            self.workers = max(1, cpus)
        elif self.workers > cpus:
            self.__exit__(None, None, None)
            raise InvalidParameter(
                f"Ray workers must be at most the cluster's {cpus} CPUs (one CPU each), got {self.workers}"
            )
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = self.progress
        context.enable_operator_progress_bars = self.progress
        # Ray Data logs each stage's start and end at INFO: this package's logging says enough.
        self._data_log_level = logging.getLogger("ray.data").level
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc) -> None:
        if hasattr(self, "_data_log_level"):
            logging.getLogger("ray.data").setLevel(self._data_log_level)
            del self._data_log_level
        if self._own and self._ray is not None:
            self._ray.shutdown()
        self._own = False
        self._ray = None

    def _started(self):
        if self._ray is None:
            raise RuntimeError("use RayEngine as a context manager: with RayEngine(...) as engine")
        return self._ray

    def describe(self) -> dict[str, Any]:
        """What the manifest records of this engine."""
        ray = self._started()
        return {"name": "ray", "ray": ray.__version__, "address": self.address or "local",
                "workers": self.workers, "batch_size": self.batch_size}

    def load_trials(
        self,
        sources: Iterable[str | os.PathLike[str]],
        *,
        strict: bool = False,
        report: LoadReport | None = None,
    ) -> list[Trial]:
        """Read and parse ``sources`` on the cluster: the trials :func:`~similarity.ingest.load_trials` gives."""
        ray = self._started()
        parts = source_parts(sources, members_per_part=self.members_per_part)
        if not parts:
            return collect_trials([], strict=strict, report=report)
        items = [{"part": i, "source": pickle.dumps(p)} for i, p in enumerate(parts)]
        rows = (
            ray.data.from_items(items, override_num_blocks=len(items))
            .flat_map(_read)
            .take_all()
        )
        rows.sort(key=lambda r: (r["part"], r["seq"]))
        return collect_trials((pickle.loads(r["record"]) for r in rows), strict=strict, report=report)

    def embed_fields(
        self, trials: Sequence[Trial], config: IndexConfig, *, cache_dir: str | None = None
    ) -> np.ndarray:
        """Field vectors ``(n, F, d)`` float16 of ``trials``, as :func:`~similarity.index.build.embed_fields` gives."""
        ray = self._started()
        n, fields = len(trials), config.text_fields
        items = [{"row": i, "trial": pickle.dumps(t)} for i, t in enumerate(trials)]
        # One block per embedding batch, and at least one per worker. Both stages take whole
        # blocks (batch_size=None): given a batch size, Ray Data bundles blocks up to it, and two
        # blocks of 24 trials for a batch of 32 become one task that only one actor would run.
        blocks = min(n, max(self.workers, math.ceil(n / self.batch_size)))
        texts = (
            ray.data.from_items(items, override_num_blocks=blocks)
            .map_batches(_texts, fn_kwargs={"fields": fields}, batch_size=None, batch_format="numpy")
            .materialize()  # before the actors take every CPU
        )
        embedded = texts.map_batches(
            _FieldEmbedder,
            fn_constructor_kwargs={"config": config, "cache_dir": cache_dir},
            batch_size=None,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=1,
        )
        out: np.ndarray | None = None
        seen = np.zeros(n, dtype=bool)
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            if out is None:
                out = np.zeros((n, batch["vectors"].shape[1]), dtype=np.float16)
            out[batch["row"]] = batch["vectors"]
            seen[batch["row"]] = True
        if out is None or not seen.all():
            raise RuntimeError(f"the Ray embedding stage returned {int(seen.sum())} of {n} trials")
        return out.reshape(n, len(fields), -1)

    def build_index(
        self,
        trials: Sequence[Trial],
        config: IndexConfig | None = None,
        *,
        cache_dir: str | None = None,
        progress: bool = False,
    ) -> TrialIndex:
        """Embed ``trials`` on the cluster and assemble the index here, as :func:`build_index` does."""
        return build_with(lambda trials, config: self.embed_fields(trials, config, cache_dir=cache_dir),
                          trials, config, progress=progress, engine=self.describe())


def build_index_ray(
    sources: Iterable[str | os.PathLike[str]] | Sequence[Trial],
    config: IndexConfig | None = None,
    *,
    cache_dir: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    strict: bool = False,
    report: LoadReport | None = None,
    progress: bool = False,
) -> TrialIndex:
    """Build an index on a Ray cluster: the same index :func:`build_index` gives for the same trials.

    Args:
        sources: source paths (read and parsed on the cluster, as ``load_trials`` reads them) or
            trials already loaded.
        address, workers, batch_size: the cluster (see :class:`RayEngine`).
        strict, report: as for :func:`~similarity.ingest.load_trials` (paths only).
    """
    sources = list(sources)
    with RayEngine(address=address, workers=workers, batch_size=batch_size, progress=progress) as engine:
        if sources and all(isinstance(s, Trial) for s in sources):
            trials = sources
        else:
            trials = engine.load_trials(sources, strict=strict, report=report)
        return engine.build_index(trials, config, cache_dir=cache_dir, progress=progress)
