"""Near-duplicates in a related list: collapsed under the first of them, or spaced out.

Registries hold families of almost identical trials: one sponsor's programme run as several
registrations with near-identical text (a vaccine's yearly lots, one protocol per country), or the
extension study of a protocol next to the protocol itself. Listed together they fill a short
related list with one study. Two candidates are *near-duplicates* when the cosine of their trial
vectors is at least ``threshold``, or when they share the lead sponsor and their titles' cosine is
at least ``title_threshold`` — unless both titles name product codes (``PF-06647263``,
``BMS-214662``, ``GSK1247446A``) and the codes differ: a sponsor's templated titles ("A Study of
PF-06647263 in Patients With Advanced Solid Tumors") keep their embeddings within a hair of each
other, but two compounds are two programmes, not one.

Walking the list by score, a candidate joins the group of its best-scored near-duplicate. With
``mode="space"`` (default) a group shows at most ``max_per_group`` trials in any ``window``
consecutive places: the others move down just enough, nothing is dropped, so the top 5 of a
widget shows one trial per programme while a longer list still holds the whole family. With
``mode="collapse"`` only the group's best trial is listed. The group's first trial names the
others in ``why["near_duplicates"]``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

import numpy as np

from ..exceptions import InvalidParameter

__all__ = ["Diversity", "Reordered", "product_codes"]

_CODE = re.compile(r"\b([A-Za-z]{1,8})-?(\d{2,})")


def product_codes(title: str | None) -> frozenset[str]:
    """Product or protocol codes in a title, normalised (``PF-06647263`` -> ``PF06647263``)."""
    return frozenset(letters.upper() + digits for letters, digits in _CODE.findall(title or ""))


@dataclasses.dataclass
class Reordered:
    """A new order of candidate positions and, for each shown position, its hidden near-duplicates."""

    order: np.ndarray
    duplicates: dict[int, list[int]]


@dataclasses.dataclass(frozen=True)
class Diversity:
    """Near-duplicate handling for :class:`~similarity.ranking.ranker.Ranker` (``diversity=Diversity()``).

    Args:
        threshold: trial-vector cosine from which two trials are near-duplicates.
        title_threshold: title cosine from which two trials of the same lead sponsor are.
        max_per_group: trials of one near-duplicate group in any ``window`` consecutive places.
        window: the run of places ``max_per_group`` applies to (5: one per group in a top 5).
        mode: ``space`` moves the others down just enough; ``collapse`` leaves them out.
    """

    threshold: float = 0.97
    title_threshold: float = 0.9
    max_per_group: int = 1
    window: int = 5
    mode: Literal["space", "collapse"] = "space"

    def __post_init__(self):
        if not (0 < self.threshold <= 1 and 0 < self.title_threshold <= 1):
            raise InvalidParameter(f"thresholds must be in (0, 1], got {self.threshold}, {self.title_threshold}")
        if self.max_per_group < 1:
            raise InvalidParameter(f"max_per_group must be >= 1, got {self.max_per_group}")
        if self.window < 1:
            raise InvalidParameter(f"window must be >= 1, got {self.window}")
        if self.mode not in ("space", "collapse"):
            raise InvalidParameter(f"mode must be 'space' or 'collapse', got {self.mode!r}")

    def near_duplicates(self, index, rows: np.ndarray) -> np.ndarray:
        """Boolean ``(n, n)`` matrix: which of the index ``rows`` are near-duplicates of which."""
        fv = np.asarray(index.field_vectors[rows], dtype=np.float32)
        tv = index.trial_vectors(fv)
        dup = tv @ tv.T >= self.threshold
        fields = list(index.config.text_fields)
        title_field = next((f for f in ("title", "brief_title") if f in fields), None)
        if title_field:
            title = fv[:, fields.index(title_field)]
            sponsors = index.columns["sponsor"][rows].astype(np.int64)
            sponsors = np.where(sponsors >= 0, sponsors, -1 - np.arange(len(rows)))  # unknown: unique
            same_sponsor = sponsors[:, None] == sponsors[None, :]
            dup |= same_sponsor & (title @ title.T >= self.title_threshold)
        np.fill_diagonal(dup, False)
        pairs = np.argwhere(np.triu(dup))
        if len(pairs):  # only flagged pairs need their titles read
            codes = {int(i): product_codes(index.trials[int(rows[i])].title) for i in np.unique(pairs)}
            for i, j in pairs:
                if codes[i] and codes[j] and codes[i] != codes[j]:
                    dup[i, j] = dup[j, i] = False
        return dup

    def reorder(self, index, rows: np.ndarray, order: np.ndarray, k: int) -> Reordered:
        """Reorder candidate positions ``order`` (best first) of index ``rows`` for a top ``k``."""
        # Only the head of the list can reach the top k; look a little further than k.
        head = order[: min(len(order), 4 * k + 16)]
        dup = self.near_duplicates(index, rows[head])
        group = np.arange(len(head))  # each trial's group: its best-scored near-duplicate
        for i in range(len(head)):
            earlier = np.flatnonzero(dup[i, :i])
            if len(earlier):
                group[i] = group[earlier[0]]
        members: dict[int, list[int]] = {}
        for i, g in enumerate(group):
            members.setdefault(int(g), []).append(i)
        if self.mode == "collapse":
            picked = [i for i in range(len(head)) if group[i] == i]
        else:
            picked, remaining = [], list(range(len(head)))
            while remaining:
                recent = [group[j] for j in picked[-(self.window - 1):]] if self.window > 1 else []
                choice = next((i for i in remaining if recent.count(group[i]) < self.max_per_group), remaining[0])
                picked.append(choice)
                remaining.remove(choice)
        duplicates = {
            int(head[g]): [int(head[i]) for i in ms if i != g] for g, ms in members.items() if len(ms) > 1
        }
        new = [int(head[i]) for i in picked] + [int(p) for p in order[len(head):]]
        return Reordered(np.array(new, dtype=np.int64), duplicates)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
