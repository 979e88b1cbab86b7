"""The request body limit, answered in the API's own `{"detail": ...}` shape.

Starlette's limiter answers in plain text; clients of this API parse JSON
errors, so the limit is enforced here: a declared length over the limit is
refused before the body is read, and a streamed body that grows past it is
cut off with an HTTPException that the error handlers turn into JSON.
Routes that take files (dataset uploads) get their own, larger limit.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE = "request body too large"
_TOO_LARGE_BODY = b'{"detail":"request body too large"}'


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int,
                 per_route: Mapping[tuple[str, str], int] | None = None) -> None:
        """`per_route` maps (method, path) to the limit that replaces `max_bytes` there."""
        self.app = app
        self.max_bytes = max_bytes
        self.per_route = dict(per_route or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_route.get((scope["method"], scope["path"]), self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send)
            return
        await self.app(scope, _counting(receive, limit), send)


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, TOO_LARGE)
        return message

    return counted


async def _refuse(send: Send) -> None:
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(_TOO_LARGE_BODY)).encode())]})
    await send({"type": "http.response.body", "body": _TOO_LARGE_BODY})
