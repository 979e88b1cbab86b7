"""The asyncio client: `BaseClient`'s calls, sent with aiohttp.

aiohttp rather than httpx's AsyncClient: with 16 requests in flight on one
loop, httpx spent about 1.3 ms of client CPU per request and aiohttp about
0.09 ms (bench/NOTES.md), and a client that submits or watches many jobs at
once is what the asyncio client is for.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

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


class AsyncClient:
    """Talks to a genai-jobs server from asyncio; use it as an async context manager.

    >>> async with AsyncClient("http://127.0.0.1:8080", token="...") as client:
    ...     status = await client.submit("diagnostics.sleep", {"seconds": 1})
    ...     job = await client.wait(status.status_id, timeout=60)
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._base = BaseClient(url, token, timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return self._base.url

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use: aiohttp wants its session made inside the running loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._base.headers, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def submit(
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
        return await self._send(
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

    async def status(self, status_id: JobId) -> StatusInfo:
        return await self._send(self._base.status_call(status_id))

    async def job(self, status_id: JobId) -> JobInfo:
        return await self._send(self._base.job_call(status_id))

    async def list(
        self,
        *,
        status: StatusFilter = None,
        job_type: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> JobList:
        """One page of the caller's jobs, newest first."""
        return await self._send(
            self._base.list_call(status=status, job_type=job_type, offset=offset, limit=limit)
        )

    async def iter_jobs(
        self,
        *,
        status: StatusFilter = None,
        job_type: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> AsyncIterator[JobInfo]:
        """Every matching job, newest first, fetching `limit` at a time."""
        call: Call[JobList] | None = self._base.list_call(
            status=status, job_type=job_type, offset=offset, limit=limit
        )
        while call is not None:
            page = await self._send(call)
            for job in page.data:
                yield job
            call = self._base.next_page_call(page)

    async def cancel(self, status_id: JobId) -> StatusInfo:
        """Ask for the job to be aborted; a running job is ABORTED once its work stops."""
        return await self._send(self._base.cancel_call(status_id))

    async def job_types(self) -> builtins.list[JobTypeInfo]:
        return await self._send(self._base.job_types_call())

    async def wait(
        self,
        status_id: JobId,
        timeout: float | None = None,
        on_change: OnChange | None = None,
    ) -> JobInfo:
        """Wait until the job is terminal and return it; `WaitTimeout` after `timeout` s.

        `on_change(job)` is called with every new version of the job seen.
        """
        loop = self._base.wait_loop(status_id, timeout, on_change)
        while True:
            job = await self._send(loop.next_call())
            if loop.done(job):
                return job

    async def _send(self, call: Call[T]) -> T:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._base.timeout, sock_read=self._base.read_seconds(call)
        )
        try:
            async with self._http().request(
                call.method,
                self._base.absolute_url(call),
                params=call.params,
                json=call.json,
                headers=call.headers,
                timeout=timeout,
            ) as response:
                status, content = response.status, await response.read()
                headers = response.headers
        except aiohttp.ConnectionTimeoutError as exc:
            raise self._base.unreachable(self._base.no_connection) from exc
        except TimeoutError as exc:  # aiohttp's read time-outs are TimeoutErrors too
            raise self._base.unreachable(self._base.no_answer) from exc
        except aiohttp.ClientError as exc:
            raise self._base.unreachable(str(exc) or type(exc).__name__) from exc
        answer = self._base.read(call, status, content)
        if call.on_headers is not None:
            call.on_headers(headers)
        return answer
