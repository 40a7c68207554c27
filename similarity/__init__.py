"""related-trials: which other clinical trials are most related to this one?

Data flows one way: source files -> :class:`Trial` records (``loaders``) -> feature vectors
(``featurize``) -> :class:`TrialIndex` (``index``, ``backends``) -> ranked list (``rank``).
"""

from .baselines import make_baseline
from .evaluate import EvaluationResult, evaluate, read_pairs
from .exceptions import (
    IndexMismatch,
    IndexNotFound,
    InvalidParameter,
    InvalidRecord,
    RelatedTrialsError,
    SourceError,
    TrialNotFound,
)
from .featurize import StructuredFeaturizer, TextFeaturizer
from .index import IndexConfig, TrialIndex, build_index
from .lexical import BM25Vectorizer
from .loaders import LoadReport, iter_trials, load_trials, trial_from_document
from .blend import BlendWeights, CascadeBlend, LearnedBlend, RRFBlend
from .rank import Filters, Ranker, RelatedTrial
from .trial import Intervention, InterventionType, Phase, Status, StudyType, Trial
from .update import UpdateReport, update_index

__all__ = [
    "BM25Vectorizer",
    "BlendWeights",
    "CascadeBlend",
    "EvaluationResult",
    "Filters",
    "IndexConfig",
    "IndexMismatch",
    "IndexNotFound",
    "Intervention",
    "InterventionType",
    "InvalidParameter",
    "InvalidRecord",
    "LearnedBlend",
    "LoadReport",
    "RRFBlend",
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
    "evaluate",
    "iter_trials",
    "load_trials",
    "make_baseline",
    "read_pairs",
    "trial_from_document",
    "update_index",
]

__version__ = "0.1.0"
