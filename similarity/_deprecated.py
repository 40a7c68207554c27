"""The module paths of the flat layout (before the stage packages), kept importable with a warning.

``import similarity.rank`` or ``from similarity.blend import FusionBlend`` still work: each old path
is a small module that forwards attribute lookups to where the code lives now and emits a
:class:`DeprecationWarning` naming the new path. Indexes saved before the move pickled their
encoders under the old paths (``similarity.featurize``, ``similarity.lexical``) and load through the
same forwarding. Import from ``similarity`` or from the stage packages instead.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

ALIASES: dict[str, tuple[str, ...]] = {
    "similarity.trial": ("similarity.ingest.trial",),
    "similarity.loaders": ("similarity.ingest",),
    **{f"similarity.loaders.{m}": (f"similarity.ingest.{m}",)
       for m in ("_common", "xml", "apiv2", "csv", "flat", "sources", "document_schema")},
    "similarity.fields": ("similarity.features.fields",),
    "similarity.featurize": ("similarity.features.text", "similarity.features.structured", "similarity.features._cells"),
    "similarity.lexical": ("similarity.features.lexical",),
    "similarity.embedding_cache": ("similarity.features.embedding_cache",),
    "similarity.store": ("similarity.index.store",),
    "similarity.neighbours": ("similarity.index.neighbours",),
    "similarity.update": ("similarity.index.update",),
    "similarity.backends": ("similarity.index.backends",),
    "similarity.backends.base": ("similarity.index.backends.base", "similarity.index.backends.factory"),
    "similarity.backends.faiss": ("similarity.index.backends.faiss",),
    "similarity.backends.numpy": ("similarity.index.backends.numpy",),
    "similarity.signals": ("similarity.ranking.signals",),
    "similarity.blend": ("similarity.ranking.blend",),
    "similarity.rank": ("similarity.ranking.ranker", "similarity.ranking.filters"),
    "similarity.diversity": ("similarity.ranking.diversity",),
    "similarity.explain": ("similarity.ranking.explain",),
    "similarity.tuning": ("similarity.ranking.tuning",),
    "similarity.selection": ("similarity.ranking.selection", "similarity.evaluation.cross_validation"),
    "similarity.evaluate": ("similarity.evaluation.runs",),
    "similarity.baselines": ("similarity.evaluation.baselines",),
    "similarity.hotswap": ("similarity.service.hotswap",),
}
"""Old module path -> the modules its names live in now (looked up in order)."""

_PACKAGES = {"similarity.loaders", "similarity.backends"}


class _Forwarder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in ALIASES:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=fullname in _PACKAGES)

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module) -> None:
        targets = ALIASES[module.__name__]
        warnings.warn(
            f"{module.__name__} is deprecated: the code moved to {' and '.join(targets)} "
            "(or import it from similarity)",
            DeprecationWarning,
            stacklevel=2,
        )
        modules = [importlib.import_module(t) for t in targets]

        def __getattr__(name: str):
            for target in modules:
                try:
                    return getattr(target, name)
                except AttributeError:
                    pass
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

        module.__getattr__ = __getattr__
        module.__all__ = [n for target in modules for n in getattr(target, "__all__", ())]


def install_aliases() -> None:
    """Make the old module paths importable (once per interpreter)."""
    if not any(isinstance(finder, _Forwarder) for finder in sys.meta_path):
        sys.meta_path.append(_Forwarder())
