"""What the dataset and vector database routes share: services, paging, errors."""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from genai_jobs.api.deps import Services
from genai_jobs.api.errors import PayloadRejected
from genai_jobs.api.urls import base_url
from genai_jobs.domain import Job, JobNotFound
from genai_jobs.handlers import JobType
from genai_jobs.vectors.build import JOB_TYPE as BUILD_JOB_TYPE
from genai_jobs.vectors.embeddings import unavailable_reason
from genai_jobs.vectors.records import VectorDatabase, VectorsError
from genai_jobs.vectors.settings import VectorSettings
from genai_jobs.vectors.store import VectorStore, vector_store_for
from genai_jobs.vectors.verify import JOB_TYPE as VERIFY_JOB_TYPE

if TYPE_CHECKING:
    from genai_jobs.vectors.search import Searcher

MAX_PAGE = 1000
MAX_OFFSET = 10**12
# The job types listing looks for the embeddings extra again at most this often, so
# that an extra installed into a running server's environment shows without a restart.
EMBEDDINGS_RECHECK_SECONDS = 1.0


class EmbeddingsUnavailable(VectorsError):
    pass


@dataclass
class VectorServices:
    """What these routes share in one process: the store, limits and the search cache."""

    services: Services
    settings: VectorSettings
    _searcher: Searcher | None = field(default=None, init=False)

    @property
    def vectors(self) -> VectorStore:
        return vector_store_for(self.services.store)

    def forget(self, vdb_id: UUID) -> None:
        """Drop a deleted database's vectors from this process's cache."""
        if self._searcher is not None:
            self._searcher.forget(vdb_id)

    @property
    def searcher(self) -> Searcher:
        if self._searcher is None:
            # Imported on first search: numpy and the model come with the embeddings extra.
            from genai_jobs.vectors.search import Searcher

            self._searcher = Searcher(self.vectors, self.settings)
        return self._searcher

    async def build_job_of(self, vdb: VectorDatabase) -> Job | None:
        if vdb.build_job_id is None:
            return None
        try:
            return await self.services.store.get(vdb.build_job_id)
        except JobNotFound:
            return None


@dataclass
class _Embeddings:
    """Whether this process can embed, as last looked up, and when."""

    reason: str | None = None
    checked_at: float = -math.inf

    def unavailable_reason(self) -> str | None:
        if time.monotonic() - self.checked_at >= EMBEDDINGS_RECHECK_SECONDS:
            # The import system remembers directories (a site-packages listing, a path
            # entry that did not exist yet); pip may have changed them since.
            importlib.invalidate_caches()
            self.reason = unavailable_reason()
            self.checked_at = time.monotonic()
        return self.reason


_EMBEDDINGS = _Embeddings()


def unavailable_now(job_type: JobType) -> str | None:
    """Why this process cannot run `job_type` now. The vector build is asked afresh: its
    reason was fixed when it was registered, and its extra may have come (or gone) since,
    which the build itself would see."""
    if job_type.name in (BUILD_JOB_TYPE, VERIFY_JOB_TYPE):
        return _EMBEDDINGS.unavailable_reason()
    return job_type.unavailable_reason


async def get_vector_services(request: Request) -> VectorServices:
    found: VectorServices = request.app.state.vector_services
    return found


VectorsDep = Annotated[VectorServices, Depends(get_vector_services)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def links(request: Request, services: Services, offset: int, limit: int, count: int,
          total: int) -> dict[str, Any]:
    """`count`, `next` and `previous` of a page, as the job list has them."""
    base = base_url(request, services.settings.behind_proxy)

    def page_url(at: int) -> str:
        url = request.url.include_query_params(offset=at, limit=limit)
        return f"{base}{url.path}?{url.query}"

    return {"count": count,
            "next": page_url(offset + limit) if offset + count < total else None,
            "previous": page_url(max(offset - limit, 0)) if offset > 0 else None}


def rejected(loc: list[str | int], kind: str, message: str) -> PayloadRejected:
    return PayloadRejected([{"loc": loc, "msg": message, "type": kind}])


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def only_methods(router: APIRouter, path: str, *allowed: str) -> None:
    """Answer 405 (`Allow: <allowed>`) to other methods at `path`, a fixed path that a
    templated route would take too (`/datasets/fromFile/` is also `/datasets/{datasetId}/`).
    OpenAPI matches a fixed path before a template; the router would hand the template's
    methods to it (a 422: not a UUID) and list them in its 405s. Add before the template."""
    allow = ", ".join(allowed)

    async def method_not_allowed() -> JSONResponse:
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405,
                            headers={"Allow": allow})

    others = [method for method in _METHODS if method not in allowed
              and not (method == "HEAD" and "GET" in allowed)]
    router.add_api_route(path, method_not_allowed, methods=others, include_in_schema=False)
