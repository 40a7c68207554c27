"""The index: trials with their features and a vector backend, saved atomically with a manifest.

:func:`build_index` (and :func:`update_index`, on the changed trials) go through one assembly path,
:func:`~similarity.index.build.assemble`; :class:`TrialIndex` holds, saves and loads the result;
:class:`Manifest` is its typed ``manifest.json``; :mod:`.backends` are the vector stores (one per
module, made by name in :mod:`.backends.factory`); :mod:`.store` reads trial records on demand and
:mod:`.neighbours` precomputes each trial's nearest others. :mod:`.ray_build` reads and embeds on a
Ray cluster (the optional ``scale`` extra) and assembles the same index.
"""

from .build import assemble, build_index, neighbour_lists
from .config import IndexConfig
from .manifest import FORMAT_VERSION, SCHEMA_VERSION, Manifest
from .ray_build import RayEngine, build_index_ray
from .trial_index import TrialIndex
from .update import UpdateReport, update_index

__all__ = [
    "FORMAT_VERSION",
    "IndexConfig",
    "Manifest",
    "RayEngine",
    "SCHEMA_VERSION",
    "TrialIndex",
    "UpdateReport",
    "assemble",
    "build_index",
    "build_index_ray",
    "neighbour_lists",
    "update_index",
]
