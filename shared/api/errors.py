"""Every answer other than 200 is `{"error": {"code", "message"}}`: one table maps the exceptions of
the layers below (catalog, database, model) to a status and code, and one loop installs the handlers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.api.schemas import ErrorBody
from shared.embedders import EmbedderError, EmbedderTemporaryError, ModelNotDeployed
from shared.search.query_language import QueryError
from shared.store.catalog import CatalogError, ModelChanged, ModelMismatch, UnknownCollection
from shared.store.db import DatabaseUnavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """An answer other than 200: status, machine code, and a message that says what to do."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class ErrorAnswer(NamedTuple):
    status: int
    code: str
    retry_after: int | None  # seconds, sent as Retry-After
    message: Callable[[Exception], str]


def _database_down(exc: Exception) -> str:
    return f"the database is unavailable right now; retry in {RETRY_AFTER_SECONDS} s ({exc})"


def _retry_later(exc: Exception) -> str:
    return f"{exc}; retry later"


def _in_query(exc: Exception) -> str:
    return f"parameter 'q': {exc}"


# A subclass needs its own line only for another answer: the nearest class in its MRO wins.
ERRORS: dict[type[Exception], ErrorAnswer] = {
    UnknownCollection: ErrorAnswer(404, "unknown_collection", None, str),
    ModelMismatch: ErrorAnswer(409, "model_mismatch", None, str),
    ModelNotDeployed: ErrorAnswer(409, "model_not_deployed", None, str),
    ModelChanged: ErrorAnswer(503, "model_changed", 1, _retry_later),
    CatalogError: ErrorAnswer(400, "bad_parameter", None, str),
    QueryError: ErrorAnswer(400, "bad_parameter", None, _in_query),
    DatabaseUnavailable: ErrorAnswer(503, "database_unavailable", RETRY_AFTER_SECONDS, _database_down),
    EmbedderTemporaryError: ErrorAnswer(503, "model_unavailable", RETRY_AFTER_SECONDS, _retry_later),
    EmbedderError: ErrorAnswer(503, "model_unavailable", None, str),
}

# What each status means, for the `responses` that /docs shows.
STATUS_DESCRIPTIONS = {
    400: "A parameter is wrong (code `bad_parameter`); the message names it.",
    401: "The API key is missing or wrong (code `unauthorized`).",
    404: "No such collection or image (`unknown_collection`, `unknown_key`).",
    409: "The collection uses a model this deployment does not hold (`model_not_deployed`): the message names both.",
    413: "The upload is over IB_MAX_UPLOAD_BYTES (`too_large`).",
    415: "The upload is not an image we can read (`unsupported_media_type`).",
    503: "The database or the model is unavailable; retry after `Retry-After` seconds when it is sent.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a router or route: these statuses, documented with the error body."""
    return {status: {"model": ErrorBody, "description": STATUS_DESCRIPTIONS[status]} for status in statuses}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def mapped_error(request: Request, exc: Exception) -> JSONResponse:
    answer = next(ERRORS[cls] for cls in type(exc).__mro__ if cls in ERRORS)
    message = answer.message(exc)
    if answer.status >= 500:
        log.warning("%s: %s", answer.code, exc)
    headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after is not None else None
    return error_response(answer.status, answer.code, message, headers)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """400 (not FastAPI's 422) naming each wrong parameter."""
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        if loc[:1] and loc[0] in ("query", "path", "body", "header"):  # where it was, not its name ("query" may be)
            loc = loc[1:]
        name = ".".join(loc) or "request"
        problems.append(f"parameter '{name}': {error.get('msg', 'invalid')}")
    return error_response(400, "bad_parameter", "; ".join(problems) + ". Fix the parameter and retry.")


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"no route {request.url.path}: see /docs for the API's routes"
    return error_response(exc.status_code, code, message, getattr(exc, "headers", None))


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(
        500, "internal", f"unexpected {type(exc).__name__} while answering {request.url.path}; "
        "the server log has the details",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    for exception_class in ERRORS:
        app.add_exception_handler(exception_class, mapped_error)
    app.add_exception_handler(Exception, unexpected_error)
