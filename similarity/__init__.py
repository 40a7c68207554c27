"""related-trials: which other clinical trials are most related to this one?

Data flows one way, one package per stage, each importing only the stages before it:
source files -> :class:`Trial` records (``ingest``) -> features (``features``) -> a saved
:class:`TrialIndex` (``index``) -> the related list (``ranking``) -> measured on labelled pairs
(``evaluation``) and served over HTTP (``service``); ``cli`` parses arguments and prints.
"""

from ._deprecated import install_aliases
from ._version import __version__  # noqa: F401 (the package version)
from .evaluation import EvaluationResult, evaluate, make_baseline, read_pairs
from .exceptions import (
    IndexMismatch,
    IndexNotFound,
    InvalidParameter,
    InvalidRecord,
    RelatedTrialsError,
    SourceError,
    TrialNotFound,
)
from .features import BM25Vectorizer, StructuredFeaturizer, TextFeaturizer
from .index import IndexConfig, Manifest, RayEngine, TrialIndex, UpdateReport, build_index, build_index_ray, update_index
from .ingest import (
    Intervention,
    InterventionType,
    LoadReport,
    Phase,
    Status,
    StudyType,
    Trial,
    iter_trials,
    load_trials,
    trial_from_document,
)
from .ranking import BlendWeights, CascadeBlend, Filters, FusionBlend, LearnedBlend, Ranker, RelatedTrial, RRFBlend

__all__ = [
    "BM25Vectorizer",
    "BlendWeights",
    "CascadeBlend",
    "EvaluationResult",
    "Filters",
    "FusionBlend",
    "IndexConfig",
    "IndexMismatch",
    "IndexNotFound",
    "Intervention",
    "InterventionType",
    "InvalidParameter",
    "InvalidRecord",
    "LearnedBlend",
    "LoadReport",
    "Manifest",
    "RRFBlend",
    "RayEngine",
    "Phase",
    "Ranker",
    "RelatedTrial",
    "RelatedTrialsError",
    "SourceError",
    "Status",
    "StructuredFeaturizer",
    "StudyType",
    "TextFeaturizer",
    "Trial",
    "TrialIndex",
    "TrialNotFound",
    "UpdateReport",
    "build_index",
    "build_index_ray",
    "evaluate",
    "iter_trials",
    "load_trials",
    "make_baseline",
    "read_pairs",
    "trial_from_document",
    "update_index",
]

install_aliases()
