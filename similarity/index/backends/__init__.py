"""Vector stores: one small interface (:mod:`.base`), one backend per module, made by name (:mod:`.factory`)."""

from .base import BackendName, VectorBackend
from .factory import EXACT_LIMIT, load_backend, make_backend
from .faiss import FaissBackend
from .numpy import NumpyBackend

__all__ = ["BackendName", "EXACT_LIMIT", "VectorBackend", "NumpyBackend", "FaissBackend", "make_backend", "load_backend"]
