"""Datasets, vector databases and search on the API: their routes, and their errors
mapped to HTTP answers in one place.

Datasets are DataRobot's catalog routes (`/api/v2/datasets/...`); vector databases
are DataRobot's GenAI routes (`/api/v2/genai/vectorDatabases/...`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from genai_jobs.api.deps import Services
from genai_jobs.api.urls import API_PREFIX
from genai_jobs.vectors import dataset_routes, vdb_routes, version_routes
from genai_jobs.vectors.deps import EmbeddingsUnavailable, VectorServices
from genai_jobs.vectors.records import (
    BadFile,
    DatasetNotFound,
    DatasetRejected,
    FilesRejected,
    NotBuilt,
    VectorDatabaseNotFound,
    VectorsError,
)
from genai_jobs.vectors.settings import vector_settings

log = logging.getLogger("genai_jobs.vectors")

_STATUS_CODES: dict[type[VectorsError], int] = {
    DatasetNotFound: 404,
    VectorDatabaseNotFound: 404,
    NotBuilt: 409,
    EmbeddingsUnavailable: 501,
}


async def _vectors_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, DatasetRejected):
        return _rejected_files([exc.bad_file])
    if isinstance(exc, FilesRejected):
        return _rejected_files(exc.files)
    status = next((code for kind, code in _STATUS_CODES.items() if isinstance(exc, kind)), 500)
    if status == 500:
        log.error("unmapped error on %s %s: %r", request.method, request.url.path, exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)
    return JSONResponse({"detail": str(exc)}, status_code=status)


def _rejected_files(files: Sequence[BadFile]) -> Response:
    """A 422 with an item per bad file, in the usual shape."""
    return JSONResponse({"detail": [{"loc": ["body", "file"], "msg": f"{file.name}: "
                                     f"{file.reason}", "type": file.kind} for file in files]},
                        status_code=422)


def body_limits() -> dict[tuple[str, str], int]:
    """Request body limits of these routes where they differ from the API's own."""
    return {("POST", dataset_routes.UPLOAD_PATH): vector_settings().dataset_max_upload_bytes}


def install(app: FastAPI, services: Services) -> None:
    """Add the routes of datasets, vector databases and search to `app`."""
    app.state.vector_services = VectorServices(services, vector_settings())
    app.add_exception_handler(VectorsError, _vectors_error)
    app.include_router(dataset_routes.router, prefix=dataset_routes.PREFIX)
    app.include_router(vdb_routes.router, prefix=API_PREFIX)
    app.include_router(version_routes.router, prefix=API_PREFIX)


__all__ = ["body_limits", "install"]
