"""Everything the sync and async clients share, with no I/O in it.

A client method is two halves: build a `Call` (what to send, how to read the
answer), then send it. Only the sending differs between `Client` and
`AsyncClient`, so everything else lives here: the requests, the reading of
answers into models and errors, and the loop of `wait()`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as _PydanticValidationError

from genai_jobs import __version__
from genai_jobs.client.exceptions import (
    APIError,
    AuthenticationError,
    Conflict,
    FieldError,
    GenAIJobsError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TooManyRequests,
    TransportError,
    UnexpectedResponse,
    ValidationFailed,
    WaitTimeout,
)
from genai_jobs.client.models import JobInfo, JobList, JobTypeInfo, StatusInfo

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_SECONDS = 10.0
# One long-poll asks the server to hold its answer at most this long. Well under
# the server's limit (60 s) and under the idle time-outs of common proxies.
MAX_POLL_SECONDS = 30
API_PREFIX = "/api/v2/genai"

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

JobId = UUID | str
# One state or several; a bare string is one state, not an iterable of letters.
StatusFilter = str | Iterable[str] | None
OnChange = Callable[[JobInfo], object]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to send, and how to turn its successful answer into a `T`."""

    method: str
    # A path under the server URL, or an absolute URL (a `next` link).
    url: str
    parse: Callable[[Any], T]
    # What the request does, for error messages: "cancel job 1234...".
    action: str
    # The job the request is about, for "job 1234... not found".
    subject: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # How long the server may hold the answer on purpose (a long-poll).
    held_seconds: float = 0.0
    # Shown the answer's headers (case-insensitive), for a call that needs one of them.
    on_headers: Callable[[Mapping[str, str]], None] | None = None


class _JobTypePage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    data: list[JobTypeInfo]


def _model(model: type[M]) -> Callable[[Any], M]:
    return model.model_validate


def _job_types(body: Any) -> list[JobTypeInfo]:
    return _JobTypePage.model_validate(body).data


def _job_path(route: str, status_id: JobId) -> str:
    # Quoted whole, so that an id typed by a person cannot reach another route.
    return f"{API_PREFIX}/{route}/{quote(str(status_id), safe='')}/"


def _status_params(status: StatusFilter) -> list[tuple[str, str]]:
    if status is None:
        return []
    states = [status] if isinstance(status, str) else list(status)
    return [("status", str(state)) for state in states]


def _server_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid server URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"invalid server URL {url!r}: expected http://HOST:PORT")
    return url.rstrip("/")


class BaseClient:
    """The configuration of a client and every request it can make, as `Call`s."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url = _server_url(url)
        self.timeout = timeout
        self.headers = {"User-Agent": f"genai-jobs-client/{__version__}"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    # -- requests -----------------------------------------------------------

    def submit_call(
        self,
        job_type: str,
        payload: dict[str, Any] | None,
        *,
        description: str | None,
        expires_in: float | None,
        max_attempts: int | None,
        priority: int | None,
        idempotency_key: str | None,
    ) -> Call[StatusInfo]:
        options = {
            "description": description,
            "expiresIn": expires_in,
            "maxAttempts": max_attempts,
            "priority": priority,
        }
        body: dict[str, Any] = {
            "jobType": job_type,
            "payload": payload if payload is not None else {},
        }
        body.update({key: value for key, value in options.items() if value is not None})
        headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
        return Call(
            "POST",
            f"{API_PREFIX}/jobs/",
            _model(StatusInfo),
            action=f"submit a {job_type} job",
            json=body,
            headers=headers,
        )

    def status_call(self, status_id: JobId) -> Call[StatusInfo]:
        return Call(
            "GET",
            _job_path("status", status_id),
            _model(StatusInfo),
            action=f"read the status of job {status_id}",
            subject=f"job {status_id}",
        )

    def job_call(self, status_id: JobId, wait_seconds: int = 0, seen: str | None = None,
                 on_headers: Callable[[Mapping[str, str]], None] | None = None
                 ) -> Call[JobInfo]:
        """`seen`: the ETag of the last answer, so that a change since is answered at once."""
        params = (("waitSeconds", str(wait_seconds)),) if wait_seconds > 0 else ()
        return Call(
            "GET",
            _job_path("jobs", status_id),
            _model(JobInfo),
            action=f"read job {status_id}",
            subject=f"job {status_id}",
            params=params,
            headers={} if seen is None else {"If-None-Match": seen},
            held_seconds=wait_seconds,
            on_headers=on_headers,
        )

    def cancel_call(self, status_id: JobId) -> Call[StatusInfo]:
        return Call(
            "DELETE",
            _job_path("status", status_id),
            _model(StatusInfo),
            action=f"cancel job {status_id}",
            subject=f"job {status_id}",
        )

    def list_call(
        self, *, status: StatusFilter, job_type: str | None, offset: int, limit: int
    ) -> Call[JobList]:
        params = _status_params(status)
        if job_type is not None:
            params.append(("jobType", job_type))
        params += [("offset", str(offset)), ("limit", str(limit))]
        return Call(
            "GET", f"{API_PREFIX}/jobs/", _model(JobList), action="list jobs", params=tuple(params)
        )

    def next_page_call(self, page: JobList) -> Call[JobList] | None:
        """The request for the page after `page`, or None when it was the last."""
        # An empty page ends the walk even with a `next` link, so that a
        # server answering the same link forever cannot loop us forever.
        if page.next is None or not page.data:
            return None
        return Call("GET", page.next, _model(JobList), action="list jobs")

    def job_types_call(self) -> Call[list[JobTypeInfo]]:
        return Call("GET", f"{API_PREFIX}/jobTypes/", _job_types, action="list job types")

    def read_seconds(self, call: Call[Any]) -> float:
        """How long to wait for the answer: a long-poll's is late on purpose."""
        return self.timeout + call.held_seconds

    def timeout_for(self, call: Call[Any]) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=self.read_seconds(call))

    def absolute_url(self, call: Call[Any]) -> str:
        """The call's URL; paths are under the server URL, `next` links are absolute."""
        return call.url if "://" in call.url else self.url + call.url

    # -- answers ------------------------------------------------------------

    def read(self, call: Call[T], status_code: int, content: bytes) -> T:
        """The parsed answer of a 2xx; otherwise raise the matching error."""
        body = _json_or_none(content)
        if not 200 <= status_code < 300:
            raise self.error_for(call, status_code, body)
        try:
            return call.parse(body)
        except _PydanticValidationError:
            raise self._unexpected(status_code) from None

    def error_for(self, call: Call[Any], status_code: int, body: Any) -> GenAIJobsError:
        """The exception for an error answer, with a one-line message."""
        if not isinstance(body, dict) or "detail" not in body:
            # A failing server or a proxy in front of it rarely answers in JSON.
            if status_code >= 500:
                message = f"the server at {self.url} failed to {call.action} ({status_code})"
                return ServerError(message, status_code=status_code, detail=None)
            return self._unexpected(status_code)
        detail = body["detail"]
        if status_code == 422:
            return _validation_failed(detail)
        kind, message = self._describe(call, status_code, _one_line(detail))
        return kind(message, status_code=status_code, detail=detail)

    def _describe(
        self, call: Call[Any], status_code: int, detail: str
    ) -> tuple[type[APIError], str]:
        if status_code == 401:
            return AuthenticationError, (
                f"the server at {self.url} rejected the token (401): {detail}"
            )
        if status_code == 404 and call.subject is not None:
            return NotFound, f"{call.subject} not found"
        if status_code == 409:
            return Conflict, f"cannot {call.action} (409): {detail}"
        if status_code == 413:
            return PayloadTooLarge, f"the request is too large for the server (413): {detail}"
        if status_code == 429:
            return TooManyRequests, f"cannot {call.action} now (429): {detail}"
        if status_code >= 500:
            return ServerError, (
                f"the server at {self.url} failed to {call.action} ({status_code}): {detail}"
            )
        kind = NotFound if status_code == 404 else APIError
        return kind, f"could not {call.action} ({status_code}): {detail}"

    def _unexpected(self, status_code: int) -> UnexpectedResponse:
        return UnexpectedResponse(
            f"the server at {self.url} answered {status_code} with something other than "
            "the GenAI jobs API; is that the right URL?",
            status_code=status_code,
        )

    def transport_error(self, exc: httpx.RequestError) -> TransportError:
        """Our error for a request that got no answer."""
        if isinstance(exc, httpx.ConnectTimeout):
            return self.unreachable(self.no_connection)
        if isinstance(exc, httpx.TimeoutException):
            return self.unreachable(self.no_answer)
        return self.unreachable(str(exc) or type(exc).__name__)

    @property
    def no_connection(self) -> str:
        return f"no connection within {self.timeout:g}s"

    @property
    def no_answer(self) -> str:
        return f"no answer within {self.timeout:g}s"

    def unreachable(self, reason: str) -> TransportError:
        return TransportError(f"cannot reach the server at {self.url}: {reason}", url=self.url)

    # -- waiting ------------------------------------------------------------

    def wait_loop(
        self, status_id: JobId, timeout: float | None, on_change: OnChange | None
    ) -> WaitLoop:
        return WaitLoop(self, status_id, timeout, on_change)


class WaitLoop:
    """The logic of `wait()`: which long-poll to send next, and when to stop.

    The driver alternates `next_call()` and `done(job)` until `done` says True;
    `done` raises `WaitTimeout` when time is up. There is no sleeping: each
    request is held by the server until the job changes or the poll ends.
    """

    def __init__(
        self,
        base: BaseClient,
        status_id: JobId,
        timeout: float | None,
        on_change: OnChange | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base
        self._status_id = status_id
        self._timeout = timeout
        self._on_change = on_change
        self._clock = clock
        self._deadline = None if timeout is None else clock() + max(timeout, 0.0)
        self._last: JobInfo | None = None
        self._seen: str | None = None

    def next_call(self) -> Call[JobInfo]:
        # Each poll names the version it has seen: a change that came between two polls
        # is answered at once, not held until the one after it.
        return self._base.job_call(self._status_id, wait_seconds=self._poll_seconds(),
                                   seen=self._seen, on_headers=self._note_version)

    def _note_version(self, headers: Mapping[str, str]) -> None:
        self._seen = headers.get("etag")

    def _poll_seconds(self) -> int:
        if self._deadline is None:
            return MAX_POLL_SECONDS
        remaining = self._deadline - self._clock()
        # Rounded up: a zero-second poll with time left would spin on the server.
        # The cost is overshooting the time-out by under a second.
        return max(0, min(math.ceil(remaining), MAX_POLL_SECONDS))

    def done(self, job: JobInfo) -> bool:
        """Take in an answer; True once the job is terminal."""
        if job != self._last and self._on_change is not None:
            self._on_change(job)
        self._last = job
        if job.status.is_terminal:
            return True
        if self._deadline is not None and self._clock() >= self._deadline:
            raise WaitTimeout(
                f"job {job.status_id} is still {job.status} after {self._timeout:g}s",
                job=job,
            )
        return False


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def _one_line(detail: Any) -> str:
    text = detail if isinstance(detail, str) else json.dumps(detail)
    return " ".join(text.split())


def _validation_failed(detail: Any) -> ValidationFailed:
    errors = _field_errors(detail)
    if errors:
        reasons = "; ".join(f"{error.where}: {_one_line(error.msg)}" for error in errors)
    else:
        reasons = _one_line(detail)
    return ValidationFailed(f"invalid request: {reasons}", detail=detail, errors=errors)


def _field_errors(detail: Any) -> list[FieldError]:
    if not isinstance(detail, list):
        return []
    return [
        FieldError(
            loc=tuple(item.get("loc", ())),
            msg=str(item.get("msg", "")),
            type=str(item.get("type", "")),
        )
        for item in detail
        if isinstance(item, dict)
    ]
