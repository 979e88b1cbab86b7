"""Per-tenant limits an admin sets, and the decision a submit takes against them.

A limit left unset (None) does not apply. The row of the tenant named `*` holds
defaults: each of a tenant's unset limits falls back to the default's value, so
an admin can cap every tenant at once and lift one tenant above it.

Both stores count what a decision needs (queued jobs, the tenant's recent
submissions) inside the transaction that inserts the job, under a per-tenant
lock where the store has concurrent writers, and ask `refusal` whether to go on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from genai_jobs.domain.errors import PriorityNotAllowed, TenantLimitReached

DEFAULTS_TENANT = "*"
_T = TypeVar("_T", int, float)

# How long a client refused for a full queue or too many running jobs is asked to
# wait: the store cannot know when a slot frees, and a few seconds keeps a retrying
# client from hammering the API without leaving it idle for long.
QUEUE_FULL_RETRY_SECONDS = 5


@dataclass(frozen=True)
class TenantLimits:
    tenant: str
    max_running: int | None = None
    max_queued: int | None = None
    submits_per_second: float | None = None
    max_priority: int | None = None
    updated_at: datetime | None = None

    @property
    def is_empty(self) -> bool:
        return (self.max_running is None and self.max_queued is None
                and self.submits_per_second is None and self.max_priority is None)

    @property
    def limits_submits(self) -> bool:
        """Whether a submit must count queued or recent jobs (priority needs no count)."""
        return self.max_queued is not None or self.submits_per_second is not None

    def over(self, defaults: TenantLimits | None) -> TenantLimits:
        """These limits, each unset one taken from `defaults`."""
        if defaults is None:
            return self
        return replace(
            self,
            max_running=_first(self.max_running, defaults.max_running),
            max_queued=_first(self.max_queued, defaults.max_queued),
            submits_per_second=_first(self.submits_per_second, defaults.submits_per_second),
            max_priority=_first(self.max_priority, defaults.max_priority),
        )


def effective_limits(tenant: str, own: TenantLimits | None,
                     defaults: TenantLimits | None) -> TenantLimits:
    """The limits that apply to `tenant`: its own row over the `*` row."""
    return (own or TenantLimits(tenant)).over(defaults)


def limits_in_force(tenant: str, own: Mapping[str, TenantLimits]) -> TenantLimits:
    """`tenant`'s limits in force, given every tenant's own limits by name (for `*`,
    its own: the defaults over themselves)."""
    return effective_limits(tenant, own.get(tenant), own.get(DEFAULTS_TENANT))


def rate_window(submits_per_second: float) -> tuple[float, int]:
    """(window in seconds, submissions allowed in it) for a rate limit.

    A sliding window counted from the jobs table itself, so every API replica
    sees the same count without shared state. The window is at least one second
    and long enough to hold one submission at slow rates (0.2/s: one per 5 s)."""
    window = max(1.0, 1.0 / submits_per_second)
    return window, max(1, math.floor(submits_per_second * window))


def priority_refusal(limits: TenantLimits, priority: int) -> PriorityNotAllowed | None:
    if limits.max_priority is not None and priority > limits.max_priority:
        return PriorityNotAllowed(limits.tenant, priority, limits.max_priority)
    return None


def submit_refusal(limits: TenantLimits, queued: int, recent: list[float],
                   now: float) -> TenantLimitReached | None:
    """Why one more job of this tenant may not be queued now, if it may not.

    `queued` counts the tenant's INITIALIZED jobs; `recent` holds the creation
    times (Unix seconds, oldest first) of its jobs inside the rate window."""
    if limits.max_queued is not None and queued >= limits.max_queued:
        return TenantLimitReached(limits.tenant, "max_queued", limits.max_queued,
                                  QUEUE_FULL_RETRY_SECONDS)
    if limits.submits_per_second is not None:
        window, allowed = rate_window(limits.submits_per_second)
        if len(recent) >= allowed:
            # Free again once the oldest submission that fills the window leaves it.
            leaves_at = recent[len(recent) - allowed] + window
            return TenantLimitReached(limits.tenant, "submits_per_second",
                                      limits.submits_per_second,
                                      max(1, math.ceil(leaves_at - now)))
    return None


def _first(value: _T | None, fallback: _T | None) -> _T | None:
    return fallback if value is None else value
