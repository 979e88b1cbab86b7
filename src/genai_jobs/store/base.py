"""The store seam: every durable operation of the system, at the domain level.

Claims are fair across tenants and honour their running limits; submits honour
the queued, rate and priority limits (domain/tenants.py).

Each method that changes a job is one atomic compare-and-set on the job's
expected state (and, for workers, on the lease they hold). A method that
loses a race raises (LeaseLost, IllegalTransition) or reports it in its
return value; it never overwrites a state someone else wrote.
"""

from __future__ import annotations

import abc
from collections.abc import Collection
from datetime import datetime
from typing import Any
from uuid import UUID

from genai_jobs.domain import (
    Job,
    JobNotFound,
    JobPage,
    JobPageJson,
    JobQuery,
    JobState,
    JobStatus,
    Lease,
    NewJob,
    SubmitOutcome,
    TenantLimits,
    TokenRecord,
)
from genai_jobs.store.changes import ChangeFeed


class Store(abc.ABC):
    """A durable home for jobs and tokens. Implementations: SQLite, PostgreSQL."""

    changes: ChangeFeed

    # -- life cycle -------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and start watching for changes made by other processes."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def migrate(self) -> list[int]:
        """Apply pending schema migrations; return the versions applied."""

    @abc.abstractmethod
    async def check_ready(self) -> None:
        """Raise StoreUnavailable unless reachable and fully migrated."""

    # -- jobs: submitters -------------------------------------------------
    @abc.abstractmethod
    async def submit(self, new: NewJob) -> SubmitOutcome:
        """Commit a new job (or return the one an Idempotency-Key already made)."""

    @abc.abstractmethod
    async def record_completed(self, new: NewJob, result: Any, result_location: str | None) -> Job:
        """Commit a job that is COMPLETED from the start: work the request that made it
        did itself (a dataset's ingest), recorded so that it has a status like any job."""

    @abc.abstractmethod
    async def get(self, job_id: UUID, tenant: str | None = None) -> Job:
        """The job, if `tenant` (None: any tenant) owns it; else JobNotFound."""

    @abc.abstractmethod
    async def is_empty(self) -> bool:
        """True when no migration was ever applied here: a database (or file) that is
        not a genai-jobs store yet."""

    @abc.abstractmethod
    async def list_jobs(self, query: JobQuery) -> JobPage: ...

    @abc.abstractmethod
    async def list_jobs_json(self, query: JobQuery) -> JobPageJson:
        """The same page as `list_jobs`, as the API's JSON, written by the database
        (a 1,000-job page built in Python holds the interpreter lock for ~75 ms)."""

    @abc.abstractmethod
    async def request_abort(self, job_id: UUID, tenant: str | None, reason: str) -> Job:
        """Abort a queued job at once, or flag a running one for its worker.

        Idempotent on an ABORTED job; IllegalTransition on other terminal states.
        """

    # -- jobs: workers ----------------------------------------------------
    @abc.abstractmethod
    async def claim(
        self, owner: str, job_types: Collection[str], lease_seconds: float, limit: int
    ) -> list[Lease]:
        """Take up to `limit` runnable jobs, highest priority then oldest first."""

    @abc.abstractmethod
    async def heartbeat(self, lease: Lease, lease_seconds: float) -> Job:
        """Extend the lease; return the job as stored (to see abort requests)."""

    @abc.abstractmethod
    async def report_progress(
        self, lease: Lease, fraction: float | None, message: str
    ) -> None: ...

    @abc.abstractmethod
    async def complete(self, lease: Lease, result: Any, result_location: str | None) -> Job: ...

    @abc.abstractmethod
    async def fail_attempt(self, lease: Lease, message: str, retry_at: datetime | None) -> Job:
        """End a failed attempt: back to INITIALIZED until `retry_at`, or ERROR if None."""

    @abc.abstractmethod
    async def finish(self, lease: Lease, state: JobState, message: str) -> Job:
        """End the attempt in ABORTED or EXPIRED, after its handler stopped."""

    @abc.abstractmethod
    async def release(self, lease: Lease, message: str) -> Job:
        """Give the job back unfinished (worker shutting down); the attempt is not counted."""

    # -- maintenance ------------------------------------------------------
    @abc.abstractmethod
    async def expire_overdue(
        self, now: datetime | None, running_grace_seconds: float
    ) -> list[Job]:
        """EXPIRE queued jobs past their deadline, and running ones whose worker
        did not stop them within the grace period. `now` None: the store's own clock
        (on PostgreSQL the database's, which every machine shares)."""

    @abc.abstractmethod
    async def reclaim_lapsed(
        self, now: datetime | None, retry_delay_seconds: float
    ) -> list[Job]:
        """Take back jobs whose lease lapsed by `now` (None: the store's clock):
        retry them, or ERROR if attempts are spent."""

    @abc.abstractmethod
    async def purge(self, finished_before: datetime) -> int:
        """Delete terminal jobs that finished before the given time."""

    @abc.abstractmethod
    async def count_by_state(self) -> dict[JobState, int]: ...

    # -- tokens -----------------------------------------------------------
    @abc.abstractmethod
    async def create_token(self, tenant: str, is_admin: bool, secret_hash: str) -> TokenRecord: ...

    @abc.abstractmethod
    async def find_token(self, secret_hash: str) -> TokenRecord | None:
        """The live (not revoked) token with this hash."""

    async def find_token_and_status(
            self, secret_hash: str, job_id: UUID) -> tuple[TokenRecord | None, JobStatus | None]:
        """The live token with this hash and, if that token may see it, the job's status:
        the status poll's two lookups. Stores override it to read both in one round trip
        and only the columns the status shows."""
        token = await self.find_token(secret_hash)
        if token is None:
            return None, None
        try:
            job = await self.get(job_id, None if token.is_admin else token.tenant)
        except JobNotFound:
            return token, None
        return token, JobStatus.of(job)

    @abc.abstractmethod
    async def touch_token(self, token_id: UUID, when: datetime) -> None: ...

    @abc.abstractmethod
    async def list_tokens(self) -> list[TokenRecord]: ...

    @abc.abstractmethod
    async def revoke_token(self, token_id: UUID) -> TokenRecord: ...

    @abc.abstractmethod
    async def count_tokens(self) -> int: ...

    # -- tenants ----------------------------------------------------------
    @abc.abstractmethod
    async def list_tenant_limits(self) -> list[TenantLimits]:
        """Every tenant's own limits (the `*` row holds the defaults), by tenant name."""

    @abc.abstractmethod
    async def set_tenant_limits(self, limits: TenantLimits) -> None:
        """Replace a tenant's limits; all-unset limits remove its row."""

    @abc.abstractmethod
    async def tenant_usage(self) -> dict[str, tuple[int, int]]:
        """(queued, running) jobs of every tenant that has some."""
