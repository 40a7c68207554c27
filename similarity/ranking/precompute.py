"""Each indexed trial's default related list, ranked once at build time and stored with the index.

:func:`store_related_lists` ranks every row with a :class:`~similarity.ranking.Ranker` exactly as a
request would (the blend, diversity and ``why`` included) and serialises the first ``k`` items of
each list into :class:`~similarity.index.stored_lists.StoredLists`. A ranker answers an unfiltered
request for ``k`` or fewer trials from them when its settings (:func:`ranker_settings`) are the ones
that made them; filtered requests, longer lists, other blends and new documents rank live.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .. import defaults
from .._version import __version__
from ..index.stored_lists import StoredLists

if TYPE_CHECKING:
    from .ranker import Ranker, RelatedTrial

__all__ = ["item_json", "ranker_settings", "store_related_lists"]


def ranker_settings(ranker: "Ranker") -> dict[str, Any]:
    """What decides a ranker's unfiltered lists beyond the index: the package release, the blend,
    diversity and candidates."""
    return {
        "version": __version__,  # another release may explain or order lists otherwise
        "blend": ranker.blend.to_dict(),
        "diversity": ranker.diversity.to_dict() if ranker.diversity is not None else None,
        "n_candidates": ranker.n_candidates,
    }


def item_json(item: "RelatedTrial") -> bytes:
    """One list item as the API serialises it (compact JSON, UTF-8)."""
    return json.dumps(item.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def store_related_lists(ranker: "Ranker", k: int = defaults.STORED_LIST_K, *, progress: bool = False) -> StoredLists:
    """Rank every row of ``ranker.index`` and store the first ``k`` items of each list.

    About 9 ms a trial on one core (threads do not help: the ranking holds the GIL); set the
    result as ``index.related_lists`` before ``index.save``.
    """
    from tqdm.auto import tqdm

    index = ranker.index
    live = ranker.with_blend(stored=False)  # rank, never read lists an earlier build stored

    def rank(row: int) -> list[bytes]:
        return [item_json(item) for item in live.related(index.nct_id(row), k)]

    lists = [rank(row) for row in tqdm(range(len(index)), desc="related lists", unit="trial", disable=not progress)]
    return StoredLists.from_items(lists, k, ranker_settings(ranker))
