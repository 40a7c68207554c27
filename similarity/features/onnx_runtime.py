"""Run a sentence-transformers model's transformer through ONNX Runtime, int8 by default.

sentence-transformers' own ``backend="onnx"`` needs ``optimum-onnx``, whose only release requires
``transformers<4.58`` (the project pins 5.24.0), so the export is done here with what is installed:
``torch.onnx.export`` of the locally loaded model (eager attention, which ONNX Runtime fuses), then
``onnxruntime.quantization.quantize_dynamic`` (int8 weights per output channel, MatMul only: the
embeddings and layer norms stay float). The exported file is cached under the model cache
(``RELATED_TRIALS_MODEL_DIR``), keyed by the weights' content and the library versions, and written
atomically; nothing is downloaded.

Only the transformer runs in ONNX Runtime: the tokenizer, pooling and normalisation are the
sentence-transformers model's own modules, so a model loaded with ``runtime="onnx-int8"`` encodes
through the same ``SentenceTransformer.encode`` as one loaded with ``runtime="torch"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import warnings
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import InvalidParameter

__all__ = ["Runtime", "use_onnx_runtime"]

logger = logging.getLogger(__name__)

# Bump when the export or quantisation settings change: a new file is exported, old ones are ignored.
_EXPORT_VERSION = 1
_OPSET = 17


class Runtime(str, Enum):
    """What runs the text model's transformer."""

    TORCH = "torch"
    """PyTorch, the weights as shipped."""
    ONNX = "onnx"
    """ONNX Runtime, float32: the same vectors as PyTorch (to rounding), ~1.2x faster on CPU."""
    ONNX_INT8 = "onnx-int8"
    """ONNX Runtime with int8 weights (dynamic quantisation): ~2.4x faster on CPU, vectors within
    ~0.007 cosine of PyTorch's; its quality on the labelled pairs is in ``benchmarks/runtime.md``."""

    @classmethod
    def parse(cls, value: "Runtime | str") -> "Runtime":
        """``value`` as a runtime; an unknown name raises :class:`InvalidParameter` naming the allowed ones."""
        try:
            return cls(value)
        except ValueError:
            raise InvalidParameter(f"unknown runtime {value!r}; allowed: {', '.join(r.value for r in cls)}") from None


def _weights_digest(model_dir: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.suffix in {".safetensors", ".bin", ".json"})
    for path in files:
        digest.update(str(path.relative_to(model_dir)).encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _cache_key(model_dir: Path, runtime: Runtime) -> str:
    import onnxruntime
    import torch

    return hashlib.sha256(
        f"{_weights_digest(model_dir)}|{runtime.value}|{torch.__version__}|{onnxruntime.__version__}|"
        f"{_EXPORT_VERSION}".encode()
    ).hexdigest()[:16]


def _last_hidden_state(model, input_names: list[str]):
    """``model`` as a module of positional inputs that returns its last hidden state (what is exported)."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(input_names, inputs)), return_dict=True).last_hidden_state

    return LastHiddenState()


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's tracer warnings and the quantiser's advice (logged on the root logger)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _export(transformer, target: Path, runtime: Runtime) -> None:
    """Export the transformer of ``transformer`` (a sentence-transformers module) to ``target``."""
    import torch

    model = transformer.model
    names = list(transformer.tokenizer.model_input_names)
    sample = transformer.tokenizer(["a short text", "a longer text about a clinical trial"], padding=True,
                                   return_tensors="pt")
    before = getattr(model.config, "_attn_implementation", None)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")  # the attention ONNX Runtime's optimizer fuses
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, _quiet():
        plain = Path(tmp) / "model.onnx"
        axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
        try:
            with torch.no_grad():
                torch.onnx.export(
                    _last_hidden_state(model.eval(), names), tuple(sample[n] for n in names), str(plain),
                    input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes,
                    opset_version=_OPSET, dynamo=False,
                )
        finally:
            if before is not None and hasattr(model, "set_attn_implementation"):
                model.set_attn_implementation(before)
        if runtime is Runtime.ONNX_INT8:
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantised = Path(tmp) / "model.int8.onnx"
            quantize_dynamic(
                str(plain), str(quantised), weight_type=QuantType.QInt8, per_channel=True,
                op_types_to_quantize=["MatMul"], extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
            plain = quantised
        os.replace(plain, target)  # atomic: a half-written export is never loaded


class _Sessions:
    """ONNX Runtime sessions of one model file, one per thread count (created on first use)."""

    def __init__(self, path: Path):
        self.path = path
        self._by_threads: dict[int, Any] = {}

    def get(self, threads: int):
        if threads not in self._by_threads:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # No busy-waiting between ops: the serving workers and the build share two cores.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._by_threads[threads] = ort.InferenceSession(str(self.path), options,
                                                             providers=["CPUExecutionProvider"])
        return self._by_threads[threads]


def _onnx_module(path: Path, config, input_names: list[str]):
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    class OnnxTransformerModel(torch.nn.Module):
        """Stands in for the Hugging Face model inside sentence-transformers' Transformer module.

        Runs on as many threads as torch is set to use at each call (``torch.set_num_threads``), so
        the featurizer's one-thread mode for a few short texts applies to it as well.
        """

        def __init__(self):
            super().__init__()
            self.config = config
            self.sessions = _Sessions(path)

        def forward(self, **features):
            feeds = {n: features[n].detach().cpu().numpy().astype(np.int64) for n in input_names}
            session = self.sessions.get(max(1, torch.get_num_threads()))
            (hidden,) = session.run(["last_hidden_state"], feeds)
            return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))

    return OnnxTransformerModel()


def use_onnx_runtime(st_model, model_dir: str | os.PathLike, runtime: Runtime | str, cache_dir: Path) -> Path:
    """Make ``st_model`` (a loaded ``SentenceTransformer``) run its transformer in ONNX Runtime.

    Exports and caches the model file on first use (a few seconds), then replaces the PyTorch model
    inside the first module, whose tokenizer and the later pooling modules are kept. Returns the
    ONNX file used.
    """
    runtime = Runtime.parse(runtime)
    if runtime is Runtime.TORCH:
        raise ValueError("use_onnx_runtime needs an ONNX runtime")
    transformer = st_model[0]
    if not hasattr(transformer, "tokenizer") or not hasattr(transformer, "model"):
        raise TypeError(f"{type(transformer).__name__} is not a transformer module: no ONNX export")
    model_dir = Path(model_dir)
    target = cache_dir / "onnx" / _cache_key(model_dir, runtime) / f"{runtime.value}.onnx"
    if not target.exists():
        logger.info("exporting %s to %s (%s)", model_dir, target, runtime.value)
        _export(transformer, target, runtime)
    names = list(transformer.tokenizer.model_input_names)
    transformer.model = _onnx_module(target, transformer.model.config, names)
    return target
