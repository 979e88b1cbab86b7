"""The blocking client: `BaseClient`'s calls, sent with `httpx.Client`."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from types import TracebackType
from typing import Any, TypeVar

import httpx

from genai_jobs.client._base import (
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_URL,
    BaseClient,
    Call,
    JobId,
    OnChange,
    StatusFilter,
)
from genai_jobs.client.models import JobInfo, JobList, JobTypeInfo, StatusInfo

T = TypeVar("T")


class Client:
    """Talks to a genai-jobs server, blocking; use it as a context manager.

    >>> with Client("http://127.0.0.1:8080", token="...") as client:
    ...     status = client.submit("diagnostics.sleep", {"seconds": 1})
    ...     job = client.wait(status.status_id, timeout=60)
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base = BaseClient(url, token, timeout)
        self._http = httpx.Client(
            base_url=self._base.url, headers=self._base.headers, transport=transport
        )

    @property
    def url(self) -> str:
        return self._base.url

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(
        self,
        job_type: str,
        payload: dict[str, Any] | None = None,
        *,
        description: str | None = None,
        expires_in: float | None = None,
        max_attempts: int | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
    ) -> StatusInfo:
        """Submit a job; its status, whose `status_id` names it from now on."""
        return self._send(
            self._base.submit_call(
                job_type,
                payload,
                description=description,
                expires_in=expires_in,
                max_attempts=max_attempts,
                priority=priority,
                idempotency_key=idempotency_key,
            )
        )

    def status(self, status_id: JobId) -> StatusInfo:
        return self._send(self._base.status_call(status_id))

    def job(self, status_id: JobId) -> JobInfo:
        return self._send(self._base.job_call(status_id))

    def list(
        self,
        *,
        status: StatusFilter = None,
        job_type: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> JobList:
        """One page of the caller's jobs, newest first."""
        return self._send(
            self._base.list_call(status=status, job_type=job_type, offset=offset, limit=limit)
        )

    def iter_jobs(
        self,
        *,
        status: StatusFilter = None,
        job_type: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> Iterator[JobInfo]:
        """Every matching job, newest first, fetching `limit` at a time."""
        call: Call[JobList] | None = self._base.list_call(
            status=status, job_type=job_type, offset=offset, limit=limit
        )
        while call is not None:
            page = self._send(call)
            yield from page.data
            call = self._base.next_page_call(page)

    def cancel(self, status_id: JobId) -> StatusInfo:
        """Ask for the job to be aborted; a running job is ABORTED once its work stops."""
        return self._send(self._base.cancel_call(status_id))

    def job_types(self) -> builtins.list[JobTypeInfo]:
        return self._send(self._base.job_types_call())

    def wait(
        self,
        status_id: JobId,
        timeout: float | None = None,
        on_change: OnChange | None = None,
    ) -> JobInfo:
        """Block until the job is terminal and return it; `WaitTimeout` after `timeout` s.

        `on_change(job)` is called with every new version of the job seen.
        """
        loop = self._base.wait_loop(status_id, timeout, on_change)
        while True:
            job = self._send(loop.next_call())
            if loop.done(job):
                return job

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.request(
                call.method,
                call.url,
                params=call.params,
                json=call.json,
                headers=call.headers,
                timeout=self._base.timeout_for(call),
            )
        except httpx.RequestError as exc:
            raise self._base.transport_error(exc) from exc
        answer = self._base.read(call, response.status_code, response.content)
        if call.on_headers is not None:
            call.on_headers(response.headers)
        return answer
