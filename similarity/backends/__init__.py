"""Vector stores: one small interface, one backend per module, chosen by a typed name."""

from .base import BackendName, VectorBackend, make_backend, load_backend
from .numpy import NumpyBackend
from .faiss import FaissBackend

__all__ = ["BackendName", "VectorBackend", "NumpyBackend", "FaissBackend", "make_backend", "load_backend"]
