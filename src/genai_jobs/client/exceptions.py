"""Everything the client raises, under one root.

    GenAIJobsError
    ├── TransportError           the server could not be reached, or did not answer in time
    ├── UnexpectedResponse       something answered, but not in this API's terms (wrong URL?)
    ├── APIError                 the server answered with an error status
    │   ├── AuthenticationError  401: missing, unknown or revoked token
    │   ├── NotFound             404: unknown id, or another tenant's job
    │   ├── Conflict             409: e.g. aborting a finished job, a reused idempotency key
    │   ├── PayloadTooLarge      413
    │   ├── ValidationFailed     422: keeps the server's list of field errors
    │   ├── TooManyRequests      429: the tenant is at a limit an admin set; retry later
    │   └── ServerError          5xx
    └── WaitTimeout              `wait()` ran out of time; carries the last job seen

Every message is one line a person can act on, so a command line can print
`str(exc)` as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genai_jobs.client.models import JobInfo


class GenAIJobsError(Exception):
    """The root of every error the client raises."""


class TransportError(GenAIJobsError):
    """No answer from the server: refused, unreachable, or too slow."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class UnexpectedResponse(GenAIJobsError):
    """An answer that is not the GenAI jobs API (not JSON, or not the expected shape)."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class APIError(GenAIJobsError):
    """The server refused or failed the request; `detail` is its explanation."""

    def __init__(self, message: str, *, status_code: int, detail: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class AuthenticationError(APIError):
    """401: the token is missing, unknown or revoked."""


class NotFound(APIError):
    """404: no such job for this token (another tenant's job looks the same)."""


class Conflict(APIError):
    """409: the request contradicts the job's state or an earlier request."""


class PayloadTooLarge(APIError):
    """413: the request body is larger than the server accepts."""


class TooManyRequests(APIError):
    """429: the tenant is at its queued-jobs or submit-rate limit; the message says
    when to try again (the server's `Retry-After`)."""


class ServerError(APIError):
    """5xx: the server failed; the request itself may be fine."""


@dataclass(frozen=True)
class FieldError:
    """One item of a 422 answer: where the input is wrong, and why."""

    loc: tuple[str | int, ...]
    msg: str
    type: str

    @property
    def where(self) -> str:
        """The location as a dotted path, e.g. `body.payload.seconds`."""
        return ".".join(str(part) for part in self.loc)


class ValidationFailed(APIError):
    """422: the server rejected the input; `errors` says where and why."""

    def __init__(self, message: str, *, detail: Any, errors: list[FieldError]) -> None:
        super().__init__(message, status_code=422, detail=detail)
        self.errors = errors

    def is_about(self, *loc: str | int) -> bool:
        """True when some error's location starts with `loc` (e.g. `"path", "statusId"`)."""
        return any(error.loc[: len(loc)] == loc for error in self.errors)


class WaitTimeout(GenAIJobsError):
    """`wait()` ran out of time before the job reached a terminal state."""

    def __init__(self, message: str, *, job: JobInfo) -> None:
        super().__init__(message)
        self.job = job
