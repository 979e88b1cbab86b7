"""Errors of the job domain.

DomainError
 ├── JobNotFound          no such job for this caller (other tenants' jobs included)
 ├── TokenNotFound        no such token id
 ├── IllegalTransition    the state table forbids the change (e.g. aborting a COMPLETED job)
 ├── LeaseLost            a worker's lease lapsed or was taken back; it must stop writing
 ├── IdempotencyConflict  an Idempotency-Key reused with a different request
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
