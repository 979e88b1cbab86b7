"""Absolute URLs built from the host the client used.

Behind a proxy (setting `behind_proxy`), X-Forwarded-Proto and
X-Forwarded-Host say what the client used; otherwise they are ignored, since
any client could send them.
"""

from __future__ import annotations

from uuid import UUID

from starlette.requests import Request

API_PREFIX = "/api/v2/genai"


def base_url(request: Request, behind_proxy: bool) -> str:
    scheme = request.url.scheme
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    if behind_proxy:
        scheme = _first(request.headers.get("x-forwarded-proto")) or scheme
        host = _first(request.headers.get("x-forwarded-host")) or host
    return f"{scheme}://{host}"


def status_url(base: str, job_id: UUID) -> str:
    return f"{base}{API_PREFIX}/status/{job_id}/"


def job_url(base: str, job_id: UUID) -> str:
    return f"{base}{API_PREFIX}/jobs/{job_id}/"


def _first(value: str | None) -> str | None:
    """The client's own value from a comma-separated chain of proxies."""
    if not value:
        return None
    return value.split(",")[0].strip() or None
