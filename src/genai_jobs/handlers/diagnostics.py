"""Built-in job types for operators and tests."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from genai_jobs.handlers.context import JobContext
from genai_jobs.handlers.registry import Registry

registry = Registry()

# How often diagnostics.sleep reports progress, in seconds.
SLEEP_PROGRESS_INTERVAL = 1.0


class SleepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, le=3600, description="How long to sleep.")
    outcome: Literal["complete", "error"] = Field(
        default="complete", description="Complete with a result, or fail with an error."
    )


class DiagnosticsFailure(Exception):
    """The failure diagnostics.sleep was asked for."""


@registry.job_type("diagnostics.sleep", payload=SleepPayload)
async def sleep(ctx: JobContext, payload: SleepPayload) -> dict[str, float]:
    """Sleep, reporting progress about once a second, then complete or fail as asked.

    Honours abort and deadlines; lets anyone check a deployment end to end.
    """
    steps = max(1, math.ceil(payload.seconds / SLEEP_PROGRESS_INTERVAL))
    for step in range(steps):
        ctx.progress(step / steps, f"slept {step * payload.seconds / steps:g} of "
                                   f"{payload.seconds:g} s")
        await ctx.asleep(payload.seconds / steps)
    if payload.outcome == "error":
        raise DiagnosticsFailure(
            f"diagnostics.sleep failed on purpose after {payload.seconds:g} s (outcome=error)"
        )
    ctx.progress(1.0, f"slept {payload.seconds:g} s")
    return {"slept": payload.seconds}
