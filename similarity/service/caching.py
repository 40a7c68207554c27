"""HTTP caching of answers: the entity tag of a request on an index build, and ``If-None-Match``."""

from __future__ import annotations

import hashlib
import json
from typing import Iterable

from ..index import TrialIndex

__all__ = ["etag_of", "etag_matches"]


def etag_of(index: TrialIndex, path: str, query: Iterable[tuple[str, str]]) -> str:
    """The entity tag of ``path`` with ``query`` (name, value pairs) on this index build.

    The build is part of it: a rebuild of the same trials (same fingerprint) with other settings
    can rank them differently.
    """
    key = json.dumps([index.fingerprint, index.build, path, sorted(query)])
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak or strong) or ``*``."""
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags or "*" in tags
