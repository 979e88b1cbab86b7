"""Job types used by the tests, loaded with `--app tests.apps.sample:registry`."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pydantic import BaseModel

from genai_jobs.handlers import JobContext, PermanentError, Registry, ResultLocation

registry = Registry()


class Sleep(BaseModel):
    seconds: float
    # If set, attempts after the first sleep this long instead.
    retry_seconds: float | None = None
    # Each run appends a line "pid attempt start|end" here, to count executions.
    record: str | None = None


def _record(path: str | None, ctx: JobContext, event: str) -> None:
    if path:
        with Path(path).open("a") as log:
            log.write(f"{os.getpid()} {ctx.attempt} {event} {time.time()}\n")


@registry.job_type("test.sync_sleep", payload=Sleep)
def sync_sleep(ctx: JobContext, payload: Sleep) -> dict[str, float]:
    """A sync handler: runs in a thread, stops when ctx.sleep is interrupted."""
    _record(payload.record, ctx, "start")
    steps = max(1, int(payload.seconds * 10))
    for step in range(steps):
        ctx.progress(step / steps, f"step {step} of {steps}")
        ctx.sleep(payload.seconds / steps)
    _record(payload.record, ctx, "end")
    return {"slept": payload.seconds}


@registry.job_type("test.async_sleep", payload=Sleep)
async def async_sleep(ctx: JobContext, payload: Sleep) -> dict[str, float]:
    """An async handler that records its runs."""
    _record(payload.record, ctx, "start")
    seconds = payload.seconds
    if ctx.attempt > 1 and payload.retry_seconds is not None:
        seconds = payload.retry_seconds
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _record(payload.record, ctx, "cancelled")
        raise
    _record(payload.record, ctx, "end")
    return {"slept": payload.seconds}


class Flaky(BaseModel):
    fail_attempts: int


@registry.job_type("test.flaky", payload=Flaky)
async def flaky(ctx: JobContext, payload: Flaky) -> dict[str, int]:
    """Fails its first `fail_attempts` attempts, then succeeds."""
    if ctx.attempt <= payload.fail_attempts:
        raise RuntimeError(f"planned failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


class Nothing(BaseModel):
    pass


@registry.job_type("test.permanent_failure", payload=Nothing)
async def permanent_failure(ctx: JobContext, payload: Nothing) -> None:
    raise PermanentError("the input can never work")


@registry.job_type("test.slow_attempt", payload=Sleep, attempt_timeout=0.5)
async def slow_attempt(ctx: JobContext, payload: Sleep) -> None:
    """Always takes longer than its attempt time-out."""
    await asyncio.sleep(payload.seconds)


@registry.job_type("test.location", payload=Nothing)
async def location(ctx: JobContext, payload: Nothing) -> ResultLocation:
    return ResultLocation("https://example.invalid/results/42", {"rows": 42})


class Count(BaseModel):
    # Each run appends "<job id> <pid> <attempt>" to this file (appends of a short
    # line are atomic, so many processes can share it).
    record: str


@registry.job_type("test.count", payload=Count)
def count(ctx: JobContext, payload: Count) -> dict[str, int]:
    """Records that it ran, and where (a sync handler: runs in a thread)."""
    with Path(payload.record).open("a") as log:
        log.write(f"{ctx.job_id} {os.getpid()} {ctx.attempt}\n")
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@registry.job_type("test.bad_result", payload=Nothing)
async def bad_result(ctx: JobContext, payload: Nothing) -> object:
    """Returns something that is not JSON."""
    return {"when": object()}


@registry.job_type("test.stubborn", payload=Sleep)
def stubborn(ctx: JobContext, payload: Sleep) -> dict[str, float]:
    """A sync handler that never looks at its context: it cannot be stopped early."""
    _record(payload.record, ctx, "start")
    time.sleep(payload.seconds)
    _record(payload.record, ctx, "end")
    return {"slept": payload.seconds}
