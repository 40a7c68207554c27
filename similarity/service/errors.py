"""Errors over HTTP: the one place where package errors become status codes and ``{"detail": ...}``
bodies, and the request-body reader that refuses what is too large or not JSON."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..exceptions import InvalidParameter, InvalidRecord, RelatedTrialsError, TrialNotFound

__all__ = ["BodyTooLarge", "install_error_handlers", "read_json"]

logger = logging.getLogger("similarity.service")


class BodyTooLarge(RelatedTrialsError, ValueError):
    """A request body over the service's ``max_body_bytes``."""


_STATUS_OF = ((TrialNotFound, 404), (BodyTooLarge, 413), (InvalidParameter, 422), (InvalidRecord, 422))


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 2,000-character query is not echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def install_error_handlers(app: FastAPI) -> None:
    """The one place where errors become HTTP status codes and ``{"detail": message}`` bodies."""

    async def package_error(request: Request, exc: Exception) -> JSONResponse:
        code = next((c for cls, c in _STATUS_OF if isinstance(exc, cls)), 500)
        if code == 500:
            logger.error("error on %s %s", request.method, request.url.path, exc_info=exc)
            return JSONResponse({"detail": "internal server error"}, status_code=500)
        return JSONResponse({"detail": str(exc)}, status_code=code)

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err.get("loc", ())[1:]) or "request"
            got = f" (got {_short(err['input'])})" if err.get("input") is not None and err.get("type") != "missing" else ""
            parts.append(f"{name}: {err.get('msg', 'invalid')}{got}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    app.add_exception_handler(RelatedTrialsError, package_error)
    app.add_exception_handler(Exception, package_error)
    app.add_exception_handler(RequestValidationError, validation_error)


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, refusing more than ``limit`` bytes (declared or actually sent)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body is {int(declared)} bytes, the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
    if not body:
        raise InvalidRecord("empty request body; send a trial document (API v2 study JSON or flat record)")
    try:
        return json.loads(bytes(body).decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InvalidRecord(f"request body: invalid UTF-8 at byte {exc.start}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidRecord(f"request body is not valid JSON: {exc}") from None
