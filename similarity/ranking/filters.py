"""Registry filters on a related list: keep trials by status, phase, intervention type, study type."""

from __future__ import annotations

import dataclasses
from typing import Iterable

from ..ingest import InterventionType, Phase, Status, StudyType, Trial, parse_phases

__all__ = ["Filters"]


def _parse_all(parser, values: Iterable[str] | None) -> tuple:
    return tuple(dict.fromkeys(parser(v) for v in values or ()))


@dataclasses.dataclass(frozen=True)
class Filters:
    """Keep only trials matching every given attribute (any of its values). Empty = no filter."""

    status: tuple[Status, ...] = ()
    phase: tuple[Phase, ...] = ()
    intervention_type: tuple[InterventionType, ...] = ()
    study_type: tuple[StudyType, ...] = ()

    @classmethod
    def parse(cls, *, status=None, phase=None, intervention_type=None, study_type=None) -> "Filters":
        """Build from strings in either registry spelling; raises InvalidParameter on unknown ones."""
        return cls(
            status=_parse_all(Status.parse, status),
            phase=tuple(dict.fromkeys(p for v in phase or () for p in parse_phases(v) or ())),
            intervention_type=_parse_all(InterventionType.parse, intervention_type),
            study_type=_parse_all(StudyType.parse, study_type),
        )

    def __bool__(self) -> bool:
        return bool(self.status or self.phase or self.intervention_type or self.study_type)

    def matches(self, trial: Trial) -> bool:
        if self.status and trial.overall_status not in self.status:
            return False
        if self.phase and not set(trial.phases or ()) & set(self.phase):
            return False
        if self.intervention_type and not set(trial.intervention_types or ()) & set(self.intervention_type):
            return False
        if self.study_type and trial.study_type not in self.study_type:
            return False
        return True
