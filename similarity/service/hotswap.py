"""Hot swap: the ranker a server answers with, replaced whole when its index directory changes.

A rebuild writes a new build directory and switches ``DIR/CURRENT`` to it (see
:meth:`TrialIndex.save`). :class:`ServedIndex` loads that build completely (the index, its
ranker, the sentence model for posted documents, one warm-up query), and only then replaces the
one reference that request handlers read. A request takes the reference once, at its start, and
keeps answering from that ranker until it returns, so no request ever sees half of two builds;
the old build is freed when its last request ends. A build that fails to load is logged and the
old one keeps serving.

Three things can trigger a reload: :meth:`ServedIndex.reload` (the service's token-protected
``POST /admin/reload``), SIGHUP to ``related-trials serve``, and :meth:`ServedIndex.watch`, a
background thread that reads ``CURRENT`` every few seconds.

An index URL (``postgresql://...``) works the same way with ``related_trials.current`` in place of
``CURRENT``: the watch reads that row, a switch there loads the new schema whole, and several
servers on one database are replicas that each follow the switch within their watch interval
(a save keeps the build it replaced, so a replica that has not switched yet keeps answering).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterator

from ..exceptions import InvalidParameter
from ..index.postgres import connect, current_build, is_index_url
from ..index.trial_index import TrialIndex
from ..ranking.ranker import Ranker

__all__ = ["ServedIndex", "Reload"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Reload:
    """What one reload did: whether the served build changed, from which to which, or why not."""

    reloaded: bool
    build: str | None
    previous: str | None
    seconds: float
    error: str | None = None


@contextlib.contextmanager
def _shared_lock(path: Path) -> Iterator[None]:
    """A shared ``flock`` on ``path/.lock`` while a build is read: a save cannot prune it meanwhile.

    Read-only index directories without a lock file are read without it.
    """
    try:
        fd = os.open(path / ".lock", os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


class ServedIndex:
    """The current :class:`Ranker` over ``index_dir``, swapped atomically on reload.

    Args:
        index_dir: an index directory written by ``related-trials build``, or a PostgreSQL URL.
        load_model: also load the sentence model before a build is served (for posted documents).
        batch_rows: embed the documents of concurrent requests together, up to this many
            (:meth:`Ranker.batch_documents`; default 1: each alone).
    """

    def __init__(self, index_dir: str | Path, *, load_model: bool = True, batch_rows: int = 1):
        self.url = index_dir.strip() if is_index_url(index_dir) else None
        self.index_dir = None if self.url else Path(index_dir)
        self._conn = None  # the watch's connection to the database of a URL
        self.load_model = load_model
        self.batch_rows = batch_rows
        self.reloads = 0
        self.last_error: str | None = None
        self._ranker: Ranker | None = None
        self._lock = threading.Lock()  # one load at a time; readers never take it
        self._failed: str | None = None  # the CURRENT name whose load failed last

    @property
    def ranker(self) -> Ranker:
        """The ranker to answer one request with; read it once and keep it for the request."""
        if self._ranker is None:
            raise RuntimeError("no index loaded yet: call ServedIndex.reload() first")
        return self._ranker

    @property
    def build(self) -> str | None:
        """The name of the build being served."""
        ranker = self._ranker
        return ranker.index.build if ranker is not None else None

    @property
    def location(self) -> str:
        """The index directory or (password masked) URL served."""
        from ..index.postgres import redact

        return redact(self.url) if self.url else str(self.index_dir)

    def current_name(self) -> str | None:
        """The build that ``CURRENT`` (or the database's ``related_trials.current``) names now."""
        if self.url:
            return self._current_in_database()
        try:
            return (self.index_dir / "CURRENT").read_text().strip() or None
        except OSError:
            return None

    def _current_in_database(self) -> str | None:
        """The schema ``related_trials.current`` names; None while the database cannot be read
        (the connection is opened again on the next call)."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self.url, register=False)
            return current_build(self._conn)
        except Exception as exc:  # noqa: BLE001 - a watch survives a database restart
            logger.warning("cannot read the current build of %s: %s", self.location, exc)
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return None

    def _load(self) -> Ranker:
        lock = _shared_lock(self.index_dir) if self.index_dir else contextlib.nullcontext()
        with lock:
            index = TrialIndex.load(self.url or self.index_dir)
            ranker = Ranker(index)
            if index.related_lists is not None and ranker.stored_lists(1) is None:
                logger.warning(
                    "%s: its stored related lists were made with other settings (blend, diversity or package "
                    "version), so every related list is ranked on request; run `related-trials fit-weights` or "
                    "rebuild to store them again", self.location)
            if self.batch_rows > 1:  # concurrent POST /related and searches share encoder calls
                ranker.batch_documents(self.batch_rows)
            if self.load_model:
                index.text_featurizer()
                ranker.vocabulary  # noqa: B018 - the search vocabulary, read before the swap
            if len(index) > 1:  # the first search builds lazy structures: not on a request
                ranker.related(index.nct_id(0), 1)
        return ranker

    def reload(self, *, raise_errors: bool = True) -> Reload:
        """Load the build ``CURRENT`` names, if it is not the one served, and swap it in.

        Raises (with ``raise_errors``) what :meth:`TrialIndex.load` raises; the served build is
        unchanged then. Without ``raise_errors`` the error is logged and returned in the result.
        """
        with self._lock:
            started = time.perf_counter()
            previous = self.build
            if previous is not None and self.current_name() == previous:
                self._failed, self.last_error = None, None  # CURRENT is back on the build served
                return Reload(False, previous, previous, time.perf_counter() - started)
            try:
                ranker = self._load()
            except Exception as exc:
                self._failed = self.current_name()
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.error("cannot load the index in %s, still serving %s: %s", self.location, previous, exc)
                if raise_errors:
                    raise
                return Reload(False, previous, previous, time.perf_counter() - started, self.last_error)
            self._ranker = ranker  # the swap: one reference assignment
            self._failed, self.last_error = None, None
            if previous is not None:
                self.reloads += 1
            seconds = time.perf_counter() - started
            logger.info(
                "serving build %s (%d trials, fingerprint %s...; was %s), loaded in %.1f s",
                self.build, len(ranker.index), ranker.index.fingerprint[:12], previous, seconds,
            )  # fmt: skip
            return Reload(self.build != previous, self.build, previous, seconds)

    def changed(self) -> bool:
        """Whether ``CURRENT`` names another build than the one served (and not one that failed)."""
        name = self.current_name()
        return name is not None and name != self.build and name != self._failed

    def watch(self, interval: float) -> threading.Event:
        """Poll ``CURRENT`` every ``interval`` seconds in a daemon thread; reload when it changes.

        Returns the event that stops the thread when set.
        """
        if interval <= 0:
            raise InvalidParameter(f"watch interval must be > 0 seconds, got {interval}")
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(interval):
                if self.changed():
                    self.reload(raise_errors=False)

        threading.Thread(target=poll, name="related-trials-index-watch", daemon=True).start()
        return stop
