"""The one place where errors become HTTP answers.

Client mistakes are 4xx with `{"detail": ...}`; validation failures are 422
in the seed's exact shape (`loc`, `msg`, `type`, nothing echoed back); only a
fault of ours is a 500, and its body never carries a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from genai_jobs import metrics
from genai_jobs.domain import (
    DomainError,
    IdempotencyConflict,
    IllegalTransition,
    JobNotFound,
    PriorityNotAllowed,
    StoreUnavailable,
    TenantLimitReached,
)

log = logging.getLogger("genai_jobs.api")

_DOMAIN_STATUS: dict[type[DomainError], int] = {
    JobNotFound: 404,
    IllegalTransition: 409,
    IdempotencyConflict: 409,
    StoreUnavailable: 503,
}


class PayloadRejected(Exception):
    """Validation errors found after FastAPI's own (job type, payload schema)."""

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        super().__init__("invalid request")
        self.errors = list(errors)


def validation_items(
    errors: Sequence[Any], prefix: Sequence[str | int] = ()
) -> list[dict[str, Any]]:
    """Pydantic errors reduced to exactly `loc`, `msg`, `type`."""
    return [
        {"loc": [*prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in errors
    ]


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(PayloadRejected, _payload_rejected)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


async def _request_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": validation_items(exc.errors())}, status_code=422)


async def _payload_rejected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PayloadRejected)
    return JSONResponse({"detail": exc.errors}, status_code=422)


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return domain_error_response(exc)


def domain_error_response(exc: DomainError) -> Response:
    """The answer to a store's refusal; also used by the fast paths in front of the app."""
    if isinstance(exc, TenantLimitReached):
        metrics.TENANT_REFUSALS.labels(exc.tenant, exc.limit).inc()
        return JSONResponse({"detail": str(exc)}, status_code=429,
                            headers={"Retry-After": str(exc.retry_after_seconds)})
    if isinstance(exc, PriorityNotAllowed):
        # A bound on a field, like the schema's own: the seed's 422 shape. Not a 429:
        # the same request would be refused again however long the client waited.
        metrics.TENANT_REFUSALS.labels(exc.tenant, "max_priority").inc()
        return JSONResponse({"detail": [{"loc": ["body", "priority"], "msg": str(exc),
                                         "type": "less_than_equal"}]}, status_code=422)
    status = next((code for kind, code in _DOMAIN_STATUS.items() if isinstance(exc, kind)), 500)
    if status == 500:
        log.error("unmapped domain error: %r", exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and request.method in ("POST", "PUT", "PATCH"):
        # FastAPI's answer to a body it cannot decode (not UTF-8, nested too deep):
        # to the client it is invalid JSON like any other, a 422 in the seed's shape.
        return JSONResponse({"detail": [{"loc": ["body"], "type": "json_invalid",
                                         "msg": "the request body is not valid JSON"}]},
                            status_code=422)
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path. The router's 405 names only the
    first matching route's, but GET and DELETE of a status are two routes: ask the
    routes, method by method, which they would take here."""
    routes = request.app.router.routes
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
                   for route in routes)]


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error"}, status_code=500)
