"""The submit's happy path, answered before the framework sees the request.

`POST /api/v2/genai/jobs/` is the other hot request: a batch of prompts is
thousands of submits. FastAPI's routing, dependency solving and response-model
machinery cost several times the work itself (bench/NOTES.md measured
600 to 900 µs of API CPU per submit). So `serve` puts this in front of the whole
app, as it does the status poll's (api/fastpath.py): a well-formed JSON submit
with a live token, a known job type and a valid payload is validated with the
same models, committed and answered here; anything else — no or a bad token, a
body that does not validate, a query string, an oversized body, a store
that refuses before committing — falls through to the route in routes/jobs.py,
which owns every error and every variation, with the body already read handed
on unchanged. Both paths build the job with `new_job` and write the answer with
`status_body`, so they cannot drift.

Once the store has been asked to commit, nothing falls through: a second try
could submit twice. A refusal from there on is answered here, as the route's
error handler would answer it.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genai_jobs import metrics
from genai_jobs.api.deps import Services
from genai_jobs.api.errors import PayloadRejected, domain_error_response
from genai_jobs.api.fastpath import bearer_secret_of, send_json
from genai_jobs.api.routes.jobs import MAX_IDEMPOTENCY_KEY_CHARS, new_job
from genai_jobs.api.schemas import SubmitRequest, status_body
from genai_jobs.api.urls import API_PREFIX, base_url, status_url
from genai_jobs.domain import DomainError, NewJob
from genai_jobs.tokens import hash_secret

_SUBMIT_PATH = f"{API_PREFIX}/jobs/"


class SubmitFastPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _candidate(scope):
            await self.app(scope, receive, send)
            return
        limit = self.services.settings.max_body_bytes
        body, more = await _read_body(receive, limit)
        new = None if more or len(body) > limit else await self._new_job(scope, body)
        if new is None:
            await self.app(scope, _replaying(body, more, receive), send)
            return
        await self._submit(new, scope, receive, send)

    async def _new_job(self, scope: Scope, body: bytes) -> NewJob | None:
        """The job this request asks for, or None when the route must answer."""
        secret = bearer_secret_of(scope)
        if secret is None:
            return None
        try:
            key = _idempotency_key(scope)
            request = SubmitRequest.model_validate(orjson.loads(body))
            token = await self.services.store.find_token(hash_secret(secret))
            if token is None:
                return None
            new = new_job(request, token.tenant, key, self.services)
        except (_RouteJudges, ValueError, ValidationError, PayloadRejected, DomainError):
            # orjson's JSONDecodeError is a ValueError; the route says what is wrong.
            return None
        self.services.note_token_use(token)
        return new

    async def _submit(self, new: NewJob, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            outcome = await self.services.store.submit(new)
        except DomainError as exc:
            await domain_error_response(exc)(scope, receive, send)
            return
        if outcome.created:
            metrics.JOBS_SUBMITTED.labels(new.job_type).inc()
        body = status_body(outcome.job)
        location = status_url(base_url(Request(scope), self.services.settings.behind_proxy),
                              outcome.job.id)
        await send_json(send, body, {"Location": location},
                        status=202 if outcome.created else 200)


def _candidate(scope: Scope) -> bool:
    if (scope["type"] != "http" or scope["method"] != "POST" or scope["query_string"]
            or scope["path"] != _SUBMIT_PATH):
        return False
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.partition(b";")[0].strip().lower()
            return media_type == b"application/json"
    return False


class _RouteJudges(Exception):
    """Something the route answers: its validation owns the error's wording."""


def _idempotency_key(scope: Scope) -> str | None:
    """The request's Idempotency-Key, None without one."""
    keys = [value for name, value in scope["headers"] if name == b"idempotency-key"]
    if not keys:
        return None
    key: str = keys[0].decode("latin-1")
    if len(keys) > 1 or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise _RouteJudges()
    return key


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body, and whether some of it is still unread: reading stops once
    past `limit` bytes (the route's size limit answers 413) and at a disconnect."""
    chunks: list[bytes] = []
    size = 0
    while True:  # bounded: every message is a part of one finite request, or its end
        message: Message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True  # a disconnect: the route's receive sees it again
        chunk: bytes = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more: bool = message.get("more_body", False)
        if size > limit or not more:
            return b"".join(chunks), more


def _replaying(body: bytes, more: bool, receive: Receive) -> Receive:
    """`receive` with the part of the body already read given back first."""
    pending: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": more}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay
