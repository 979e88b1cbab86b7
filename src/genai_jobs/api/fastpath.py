"""The status poll's happy path, answered before the framework sees the request.

`GET /api/v2/genai/status/{id}/` is what every client polls, and it is cheap
work: one indexed lookup of token and job together, and seven fields. Routing
it through Starlette's middleware and FastAPI's routing would cost more than
the work itself (bench/ measures both). So `serve` puts this in front of the
whole app (api/app.py `create_asgi_app`), and a request for it that has no
query string is answered here, with the same body and headers as the route in
routes/status.py; anything else — a missing or bad token, a malformed or
unknown id, `waitSeconds` — falls through to that route, which owns every
error and every variation. Both paths share `status_body` and
`status_headers`, so the answer cannot drift.
"""

from __future__ import annotations

import re
from uuid import UUID

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from genai_jobs.api.deps import AUTH_SCHEMES, Services
from genai_jobs.api.routes.status import status_headers
from genai_jobs.api.schemas import status_body
from genai_jobs.domain import DomainError
from genai_jobs.tokens import hash_secret

_STATUS_PATH = re.compile(r"/api/v2/genai/status/([0-9a-fA-F-]{32,36})/")


class StatusFastPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self._answered(scope, send):
            await self.app(scope, receive, send)

    async def _answered(self, scope: Scope, send: Send) -> bool:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            return False
        match = _STATUS_PATH.fullmatch(scope["path"])
        secret = bearer_secret_of(scope) if match else None
        if match is None or secret is None:
            return False
        try:
            token, job = await self.services.store.find_token_and_status(
                hash_secret(secret), UUID(match.group(1)))
        except (ValueError, DomainError):  # not a UUID, store down: the route says
            return False
        if token is None or job is None:  # the route answers 401 or 404
            return False
        self.services.note_token_use(token)
        body = status_body(job)
        headers = status_headers(job, Request(scope), self.services.settings.behind_proxy)
        raw_headers = [(b"content-type", b"application/json"),
                       (b"content-length", str(len(body)).encode())]
        raw_headers.extend((name.lower().encode(), value.encode())
                           for name, value in headers.items())
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})
        return True


def bearer_secret_of(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            header: str = value.decode("latin-1")
            scheme, _, secret = header.strip().partition(" ")
            if scheme.lower() in AUTH_SCHEMES and secret.strip():
                return secret.strip()
            return None
    return None
