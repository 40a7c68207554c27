"""Source paths -> ``Trial`` records: path walking, format detection and the load report.

A source is a legacy ``.xml`` file, an API v2 or flat ``.json`` / ``.jsonl`` file, a registry
``.csv`` export, a ``.zip`` of ``.xml`` / ``.json`` / ``.jsonl`` members (read member by member,
never extracted) or a directory holding any of the loose files. Records are streamed: a zip member,
a JSONL line and a CSV row are read only when the previous trial has been used.

A bad record (no NCT ID, malformed or hostile document) becomes an :class:`InvalidRecord` naming
its file, zip member or line; it is skipped and kept in :attr:`LoadReport.errors`, or raised in
strict mode. A source that cannot be read at all raises :class:`SourceError` in both modes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import lzma
import os
import sys
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Collection, Iterable, Iterator, Mapping

from tqdm import tqdm

from ..exceptions import InvalidRecord, SourceError
from .trial import NCT_ID_PATTERN, Trial
from ._common import MAX_DOCUMENT_BYTES
from .apiv2 import is_study, trial_from_study
from .csv import iter_csv
from .flat import is_flat, trial_from_flat
from .xml import trial_from_xml

__all__ = ["LoadReport", "iter_trials", "load_trials", "trial_from_document"]

logger = logging.getLogger(__name__)

#: File types read from a directory, and from a zip (no CSV in zips).
FILE_SUFFIXES = (".xml", ".json", ".jsonl", ".csv")
ZIP_MEMBER_SUFFIXES = (".xml", ".json", ".jsonl")

_Result = Trial | InvalidRecord


@dataclasses.dataclass
class LoadReport:
    """What a load did: trials loaded, records skipped with their errors, duplicated NCT IDs.

    ``loaded`` counts the records :func:`iter_trials` yielded; after :func:`load_trials`, the
    distinct trials it returned.
    """

    loaded: int = 0
    errors: list[InvalidRecord] = dataclasses.field(default_factory=list)
    duplicates: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        """One line: ``7003 trials loaded, 2 records skipped, 1 duplicate NCT ID``."""

        def count(n: int, noun: str) -> str:
            return f"{n} {noun}{'' if n == 1 else 's'}"

        return ", ".join(
            [
                f"{count(self.loaded, 'trial')} loaded",
                f"{count(len(self.errors), 'record')} skipped",
                count(len(self.duplicates), "duplicate NCT ID"),
            ]
        )


def trial_from_document(doc: Any, *, source: str | None = None) -> Trial:
    """Build a ``Trial`` from one JSON document: an API v2 study or a flat record.

    Raises:
        InvalidRecord: ``doc`` is not an object, or neither has ``protocolSection`` nor ``nct_id``,
            or cannot become a trial.
    """
    if is_study(doc):
        return trial_from_study(doc, source=source)
    if is_flat(doc):
        return trial_from_flat(doc, source=source)
    if not isinstance(doc, Mapping):
        raise InvalidRecord(
            f"a record must be a JSON object, got {type(doc).__name__}", source=source
        )
    raise InvalidRecord(
        "not an API v2 study (no protocolSection) nor a flat record (no nct_id)", source=source
    )


def _record_hint(name: str) -> str | None:
    """The NCT ID a file is named after (``NCT00000102.xml``), to name a record it cannot read."""
    stem = Path(name).stem
    return stem if NCT_ID_PATTERN.match(stem) else None


def _one(doc: Any, source: str) -> _Result:
    try:
        return trial_from_document(doc, source=source)
    except InvalidRecord as error:
        return error


def _parse_json(data: bytes, source: str, record: str | None = None) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise InvalidRecord(
            f"invalid UTF-8 at byte {error.start}", source=source, record=record
        ) from None
    except ValueError as error:  # JSONDecodeError, or an integer over sys.get_int_max_str_digits()
        raise InvalidRecord(f"malformed JSON: {error}", source=source, record=record) from None
    except RecursionError:
        raise InvalidRecord("JSON nested too deeply", source=source, record=record) from None


def _json_document(data: bytes, source: str, record: str | None) -> Iterator[_Result]:
    """One ``.json`` document: a study, a flat record, a ``{"studies": [...]}`` page or an array."""
    try:
        value = _parse_json(data, source, record)
    except InvalidRecord as error:
        yield error
        return
    is_page = isinstance(value, Mapping) and "studies" in value
    if is_page and not (is_study(value) or is_flat(value)):
        value = value["studies"]
        if not isinstance(value, list):
            yield InvalidRecord("'studies' must be a list", source=source, record=record)
            return
    if isinstance(value, list):
        for number, item in enumerate(value, start=1):
            yield _one(item, f"{source}, item {number}")
    else:
        yield _one(value, source)


def _jsonl_lines(stream: IO[bytes], source: str) -> Iterator[_Result]:
    """A JSON Lines stream, one study or flat record per line, read line by line."""
    number = 0
    while line := stream.readline(MAX_DOCUMENT_BYTES + 1):
        number += 1
        where = f"{source}, line {number}"
        if len(line) > MAX_DOCUMENT_BYTES:
            while line and not line.endswith(b"\n"):
                line = stream.readline(1 << 20)
            yield InvalidRecord(f"line over {MAX_DOCUMENT_BYTES} bytes", source=where)
            continue
        if not line.strip():
            continue
        try:
            yield _one(_parse_json(line, where), where)
        except InvalidRecord as error:
            yield error


def _document(data: bytes, suffix: str, source: str, name: str) -> Iterator[_Result]:
    """One whole ``.xml`` or ``.json`` document."""
    record = _record_hint(name)
    if suffix == ".xml":
        try:
            yield trial_from_xml(data, source=source, record=record)
        except InvalidRecord as error:
            yield error
    else:
        yield from _json_document(data, source, record)


def _read_file(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise SourceError(f"{path}: {size} bytes, over the limit of {MAX_DOCUMENT_BYTES}")
        return path.read_bytes()
    except OSError as error:
        raise SourceError(f"cannot read {path}: {error.strerror or error}") from None


# What a damaged zip raises besides BadZipFile: an unsupported "version needed" or compression
# (NotImplementedError), an encrypted member (RuntimeError), a name flagged UTF-8 that is not
# (UnicodeDecodeError, a ValueError), data cut short (EOFError), a bad deflate stream (zlib.error).
_ZIP_OPEN_ERRORS = (OSError, zipfile.BadZipFile, NotImplementedError, ValueError, EOFError)
_ZIP_READ_ERRORS = _ZIP_OPEN_ERRORS + (zlib.error, lzma.LZMAError, RuntimeError)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bytes:
    """One whole member, read with a size cap (the size in its header may lie)."""
    record = _record_hint(info.filename)
    if info.file_size > MAX_DOCUMENT_BYTES:
        raise InvalidRecord(f"member of {info.file_size} bytes, over the limit", source=where)
    try:
        with archive.open(info) as member:
            data = member.read(MAX_DOCUMENT_BYTES + 1)
    except _ZIP_READ_ERRORS as error:
        raise InvalidRecord(
            f"unreadable zip member: {error}", source=where, record=record
        ) from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidRecord("member over the size limit", source=where, record=record)
    return data


def _member_lines(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> Iterator[_Result]:
    try:
        with archive.open(info) as member:
            yield from _jsonl_lines(member, where)
    except _ZIP_READ_ERRORS as error:
        yield InvalidRecord(f"unreadable zip member: {error}", source=where)


def _iter_zip(path: Path, members: Collection[str] | None = None) -> Iterator[_Result]:
    """The records of a zip, or of the named ``members`` only (in the zip's order)."""
    try:
        archive = zipfile.ZipFile(path)
    except _ZIP_OPEN_ERRORS as error:
        raise SourceError(f"cannot read zip {path}: {error}") from None
    with archive:
        for info in _zip_members(archive):
            if members is not None and info.filename not in members:
                continue
            where = f"{path}, member {info.filename}"
            suffix = Path(info.filename).suffix.lower()
            if suffix == ".jsonl":
                yield from _member_lines(archive, info, where)
                continue
            try:
                data = _read_member(archive, info, where)
            except InvalidRecord as error:
                yield error
                continue
            yield from _document(data, suffix, where, info.filename)


def _zip_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    return [
        info
        for info in archive.infolist()
        if not info.filename.endswith("/")  # is_dir() fails on an empty name
        and Path(info.filename).suffix.lower() in ZIP_MEMBER_SUFFIXES
        and not any(p.startswith(".") or p == "__MACOSX" for p in Path(info.filename).parts)
    ]


def _iter_file(path: Path) -> Iterator[_Result]:
    suffix = path.suffix.lower()
    source = str(path)
    if suffix == ".zip":
        yield from _iter_zip(path)
    elif suffix in (".xml", ".json"):
        yield from _document(_read_file(path), suffix, source, path.name)
    elif suffix == ".jsonl":
        try:
            stream = path.open("rb")
        except OSError as error:
            raise SourceError(f"cannot read {path}: {error.strerror or error}") from None
        with stream:
            yield from _jsonl_lines(stream, source)
    elif suffix == ".csv":
        try:
            stream = path.open("rb")
        except OSError as error:
            raise SourceError(f"cannot read {path}: {error.strerror or error}") from None
        with stream:
            yield from iter_csv(stream, source=source)
    else:  # _expand lets no other suffix through
        raise SourceError(f"{path}: unknown file type {suffix!r}")


def _expand(sources: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Check every source and list the files to read, directories walked in sorted order."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = [
                p
                for p in path.rglob("*")
                if p.suffix.lower() in FILE_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            ]
            if not found:
                logger.warning("%s: no .xml, .json, .jsonl or .csv files in the directory", path)
            files.extend(sorted(found, key=lambda p: p.relative_to(path).parts))
        elif not path.exists():
            raise SourceError(f"{path}: no such file or directory")
        elif not path.is_file():
            raise SourceError(f"{path}: not a file or directory")
        elif path.suffix.lower() not in FILE_SUFFIXES + (".zip",):
            raise SourceError(
                f"{path}: unknown file type {path.suffix!r}; expected a directory or a file "
                "ending in .xml, .json, .jsonl, .csv or .zip"
            )
        else:
            files.append(path)
    return files


def _expected_total(files: list[Path]) -> int | None:
    """The number of records, where known without reading them: XML files and XML zip members."""
    total = 0
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".xml":
            total += 1
        elif suffix == ".zip":
            try:
                with zipfile.ZipFile(path) as archive:
                    members = _zip_members(archive)
            except _ZIP_OPEN_ERRORS as error:
                raise SourceError(f"cannot read zip {path}: {error}") from None
            if any(not m.filename.lower().endswith(".xml") for m in members):
                return None
            total += len(members)
        else:
            return None
    return total


def iter_trials(
    sources: Iterable[str | os.PathLike[str]],
    *,
    strict: bool = False,
    report: LoadReport | None = None,
    progress: bool = False,
) -> Iterator[Trial]:
    """Yield a ``Trial`` for every record of the sources, in order, duplicates included.

    Args:
        sources: paths of files (``.xml``, ``.json``, ``.jsonl``, ``.csv``, ``.zip``) or
            directories.
        strict: raise the first invalid record instead of skipping it.
        report: filled as records are read: ``loaded``, ``errors`` (the skipped records),
            ``duplicates`` (NCT IDs seen more than once, each listed once).
        progress: show a progress bar on stderr, with a total for XML files and zips of XML.

    Raises:
        SourceError: a source is missing, unreadable or of an unknown type (in both modes).
        InvalidRecord: in strict mode, the first record that cannot become a trial.
    """
    own_report = report is None
    report = LoadReport() if report is None else report
    files = _expand(sources)
    total = _expected_total(files) if progress else None
    with tqdm(total=total, unit="trial", file=sys.stderr, disable=not progress) as bar:

        def results() -> Iterator[_Result]:
            for path in files:
                logger.debug("reading %s", path)
                for result in _iter_file(path):
                    bar.update()
                    yield result

        yield from _tally(results(), strict=strict, report=report)
    if own_report:
        logger.info("%s", report.summary())


def _tally(results: Iterable[_Result], *, strict: bool, report: LoadReport) -> Iterator[Trial]:
    """The trials among ``results``, in order: bad records and duplicated IDs go in ``report``."""
    seen: dict[str, str | None] = {}
    duplicated = set(report.duplicates)
    for result in results:
        if isinstance(result, InvalidRecord):
            report.errors.append(result)
            if strict:
                raise result
            logger.warning("skipped: %s", result)
            continue
        if result.nct_id in seen:
            logger.warning(
                "duplicate NCT ID %s at %s (first at %s)",
                result.nct_id, result.source, seen[result.nct_id],
            )  # fmt: skip
            if result.nct_id not in duplicated:
                duplicated.add(result.nct_id)
                report.duplicates.append(result.nct_id)
        else:
            seen[result.nct_id] = result.source
        report.loaded += 1
        yield result


def load_trials(
    sources: Iterable[str | os.PathLike[str]],
    *,
    strict: bool = False,
    report: LoadReport | None = None,
    progress: bool = False,
) -> list[Trial]:
    """Load every trial of the sources, one per NCT ID.

    A later record with the same NCT ID replaces the earlier one in its position; the duplicated IDs
    are listed in ``report.duplicates``. Arguments and errors as for :func:`iter_trials`.
    """
    report = LoadReport() if report is None else report
    return _latest(iter_trials(sources, strict=strict, report=report, progress=progress), report)


def _latest(records: Iterable[Trial], report: LoadReport) -> list[Trial]:
    """One trial per NCT ID: a later record replaces the earlier one in its position."""
    trials: dict[str, Trial] = {}
    for trial in records:
        trials[trial.nct_id] = trial  # a dict keeps the first position of a replaced key
    report.loaded = len(trials)
    if report.duplicates:
        logger.warning(
            "%d NCT IDs appear more than once; the later record replaced the earlier: %s",
            len(report.duplicates),
            ", ".join(report.duplicates[:10]) + (" ..." if len(report.duplicates) > 10 else ""),
        )
    logger.info("%s", report.summary())
    return list(trials.values())
