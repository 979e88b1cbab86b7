"""The polls' happy path, answered before the framework sees the request.

`GET /api/v2/genai/status/{id}/` is what every client polls, and
`GET /api/v2/genai/jobs/{id}/?waitSeconds=N` is how our own client waits: both
are cheap work (an indexed lookup of token and job, then a body written
directly). Routing them through Starlette's middleware and FastAPI's
dependencies and response models would cost more than the work itself (bench/
measures both). So `serve` puts this in front of the whole app (api/app.py
`create_asgi_app`). A request for either path whose query string is empty or
exactly `waitSeconds=<0..60>`, with a live token that may see the job, is
answered here, long-poll included, with the same body and headers as the
routes in routes/status.py and routes/jobs.py; anything else — a missing or
bad token, a malformed or unknown id, another query — falls through to those
routes, which own every error and every variation. Both paths share the body
and header functions and `wait_for_change`, so the answers cannot drift.

Once a wait has begun, nothing falls through: a store failure from there on is
answered here, as the routes' error handler would answer it.
"""

from __future__ import annotations

import re
from uuid import UUID

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from genai_jobs.api.deps import Services, secret_of
from genai_jobs.api.errors import domain_error_response
from genai_jobs.api.longpoll import (
    any_field,
    seen_tag,
    shared_reads,
    status_fields,
    wait_for_change,
)
from genai_jobs.api.routes.status import MAX_WAIT_SECONDS, status_headers
from genai_jobs.api.schemas import job_body, status_body
from genai_jobs.api.urls import API_PREFIX
from genai_jobs.domain import DomainError, Job, JobStatus, TokenRecord
from genai_jobs.tokens import hash_secret

_READ_PATH = re.compile(re.escape(API_PREFIX) + r"/(status|jobs)/([0-9a-fA-F-]{32,36})/")
_WAIT_QUERY = re.compile(rb"waitSeconds=([0-9]{1,2})")


class StatusFastPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self._answered(scope, receive, send):
            await self.app(scope, receive, send)

    async def _answered(self, scope: Scope, receive: Receive, send: Send) -> bool:
        if scope["type"] != "http" or scope["method"] != "GET":
            return False
        match = _READ_PATH.fullmatch(scope["path"])
        seconds = _wait_seconds(scope["query_string"]) if match else None
        secret = bearer_secret_of(scope) if seconds is not None else None
        if match is None or seconds is None or secret is None:
            return False
        try:
            token, status = await self.services.store.find_token_and_status(
                hash_secret(secret), UUID(match.group(2)))
        except (ValueError, DomainError):  # not a UUID, store down: the route says
            return False
        if token is None or status is None:  # the route answers 401 or 404
            return False
        self.services.note_token_use(token)
        full = match.group(1) == "jobs"
        seen = seen_tag(_header(scope, b"if-none-match"))
        try:
            job = await self._awaited(token, status, seconds, full, receive, seen)
        except DomainError as exc:
            await domain_error_response(exc)(scope, receive, send)
            return True
        if full:
            assert isinstance(job, Job)
            await send_json(send, shared_reads(self.services.store).body_of(job, job_body),
                            {"ETag": any_field.tag(job)})
        else:
            await send_json(send, status_body(job), status_headers(
                job, Request(scope), self.services.settings.behind_proxy))
        return True

    async def _awaited(self, token: TokenRecord, status: JobStatus, seconds: int,
                       full: bool, receive: Receive, seen: str | None) -> Job | JobStatus:
        """What the answer shows: the job as it is, or once it changed (a long-poll)."""
        store = self.services.store
        wait = min(seconds, self.services.settings.max_wait_seconds)
        if not full and (wait <= 0 or status.is_terminal
                         or (seen is not None and status_fields.tag(status) != seen)):
            return status  # the poll's one query showed all it needs
        if wait <= 0:
            return await store.get(status.id, None if token.is_admin else token.tenant)
        # The token may see the job (the poll's query said so): a read shared with the
        # job's other waiters will do, as a crowd polls again at once after each answer.
        read_at = store.changes.tick
        job = await shared_reads(store).read(status.id, read_at)
        return await wait_for_change(store, job, wait, any_field if full else status_fields,
                                     receive, seen, read_at)


def _wait_seconds(query: bytes) -> int | None:
    """0 without a query; None for any query but a valid `waitSeconds` (the route's)."""
    if not query:
        return 0
    match = _WAIT_QUERY.fullmatch(query)
    seconds = None if match is None else int(match.group(1))
    return seconds if seconds is not None and seconds <= MAX_WAIT_SECONDS else None


async def send_json(send: Send, body: bytes, headers: dict[str, str], status: int = 200) -> None:
    """A JSON answer, written straight to the server (the fast paths' one way out)."""
    raw_headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
    raw_headers.extend((name.lower().encode(), value.encode())
                       for name, value in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def bearer_secret_of(scope: Scope) -> str | None:
    """The token of the request's first Authorization header, as `bearer_secret` reads it."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return secret_of(value.decode("latin-1"))
    return None
