"""Connections that protect the one-command server from clients that stall it.

uvicorn closes a connection that is idle *between* requests (its keep-alive
time-out) but never one that sends half a request and goes quiet, nor one that
stops reading its answer: each holds a socket, a file descriptor and memory for
as long as the client likes, and a thousand of them make the service
unavailable. `guarded_protocol` is uvicorn's own httptools protocol with the
time-outs it lacks, each measured while the connection waits on the client:

- a request's head (request line and headers) must arrive within
  `header_seconds` of its first byte, or of the connection's opening;
- a body may pause at most `body_idle_seconds` between two of its parts;
- an answer the client does not read may stall the write buffer at most
  `write_stall_seconds`.

While the application works on a request (a long-poll holds its answer up to
60 s) no clock runs: the client is not the one keeping it. A connection over
`max_connections` is answered `503` at once and closed, so that sockets stay
below the process's file limit and the server never spins on `accept()`
failing with "Too many open files".
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("genai_jobs.connections")

# File descriptors kept for what is not a client connection: the store's files and
# connections, the log, inotify, the model's files.
RESERVED_FILES = 128
# At most one log line per this many seconds for each kind of refusal or time-out.
LOG_EVERY_SECONDS = 10.0



def _answer(status: bytes, body: bytes, extra: bytes = b"") -> bytes:
    """A whole HTTP answer that closes its connection, written before any request is read."""
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n" + extra
            + b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body)


_BUSY = _answer(b"503 Service Unavailable",
                b'{"detail":"too many connections: try again later"}', b"retry-after: 1\r\n")
_TIMEOUT = _answer(b"408 Request Timeout",
                   b'{"detail":"the request was not sent in time: closed"}')


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_seconds: float
    body_idle_seconds: float
    write_stall_seconds: float
    max_connections: int


class RateLimitedLog:
    """One line per kind every LOG_EVERY_SECONDS, saying how many were not logged."""

    def __init__(self, every: float = LOG_EVERY_SECONDS) -> None:
        self._every = every
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -self._every) < self._every:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        quiet = self._quiet.pop(kind, 0)
        self._last[kind] = now
        log.warning("%s%s", message, f" ({quiet} more since the last such line)" if quiet else "")


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # a container may refuse: keep what we have
            pass
    return soft


def connection_cap(wanted: int, file_limit: int) -> int:
    """The most client connections to hold: what was asked, below the file limit."""
    return max(1, min(wanted, file_limit - RESERVED_FILES))


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class with `limits` applied."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"limits": limits, "events": RateLimitedLog()})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """One connection: uvicorn's protocol, plus one clock that runs while it waits on
    its client (`_arm`) and closes it when the client is late."""

    limits: ClassVar[ConnectionLimits]
    events: ClassVar[RateLimitedLog]
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.events.warning("busy", f"refused a connection: over the limit of "
                                        f"{self.limits.max_connections} open connections")
            transport.write(_BUSY)
            transport.close()
            return
        self._arm(self.limits.header_seconds, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.limits.header_seconds, self._head_late)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.limits.body_idle_seconds, self._body_late)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.limits.body_idle_seconds, self._body_late)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()  # the application has the whole request now

    def pause_writing(self) -> None:
        super().pause_writing()
        self._arm(self.limits.write_stall_seconds, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._disarm()

    def _arm(self, seconds: float, expired: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = asyncio.get_running_loop().call_later(seconds, expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_late(self) -> None:
        self._close_late("a request's head", self.limits.header_seconds)

    def _body_late(self) -> None:
        self._close_late("a request's body", self.limits.body_idle_seconds)

    def _close_late(self, what: str, seconds: float) -> None:
        self._deadline = None
        self.events.warning("late", f"closed a connection: {what} did not arrive within "
                                    f"{seconds:g} s")
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_TIMEOUT)  # no request of its own is there to answer it
        self.transport.close()

    def _write_stalled(self) -> None:
        self._deadline = None
        self.events.warning("stalled", f"closed a connection: its client read nothing of the "
                                       f"answer for {self.limits.write_stall_seconds:g} s")
        self.transport.abort()  # a close would wait for the unread buffer to drain
