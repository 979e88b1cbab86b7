"""Errors of the job domain.

DomainError
 ├── JobNotFound          no such job for this caller (other tenants' jobs included)
 ├── TokenNotFound        no such token id
 ├── IllegalTransition    the state table forbids the change (e.g. aborting a COMPLETED job)
 ├── LeaseLost            a worker's lease lapsed or was taken back; it must stop writing
 ├── IdempotencyConflict  an Idempotency-Key reused with a different request
 ├── TenantLimitReached   the tenant is at a limit an admin set (queued jobs, submit rate)
 ├── PriorityNotAllowed   a priority above the tenant's cap
 └── StoreUnavailable     the store cannot be reached or is not migrated
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain and the stores raise on purpose."""


class JobNotFound(DomainError):
    def __init__(self, job_id: object) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class TokenNotFound(DomainError):
    def __init__(self, token_id: object) -> None:
        super().__init__(f"token {token_id} not found")
        self.token_id = token_id


class IllegalTransition(DomainError):
    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a {current} job cannot become {target}")
        self.current = current
        self.target = target


class LeaseLost(DomainError):
    def __init__(self, job_id: object) -> None:
        super().__init__(f"the lease on job {job_id} was lost")
        self.job_id = job_id


class IdempotencyConflict(DomainError):
    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with a different request")
        self.key = key


class StoreUnavailable(DomainError):
    """The store is unreachable or its schema is not at the expected version."""


class TenantLimitReached(DomainError):
    """The tenant is at a limit an admin set; trying again later may succeed."""

    def __init__(self, tenant: str, limit: str, value: float, retry_after_seconds: int) -> None:
        shown = {"max_queued": f"at most {value:g} queued jobs",
                 "submits_per_second": f"at most {value:g} submits per second"}.get(
            limit, f"{limit} {value:g}")
        super().__init__(f"tenant {tenant!r} is limited to {shown}; "
                         f"retry in {retry_after_seconds} s")
        self.tenant = tenant
        self.limit = limit
        self.retry_after_seconds = retry_after_seconds


class PriorityNotAllowed(DomainError):
    """A submit asked for a priority above the tenant's cap; retrying cannot help."""

    def __init__(self, tenant: str, priority: int, max_priority: int) -> None:
        super().__init__(f"priority {priority} is above tenant {tenant!r}'s limit"
                         f" of {max_priority}")
        self.tenant = tenant
        self.priority = priority
        self.max_priority = max_priority
