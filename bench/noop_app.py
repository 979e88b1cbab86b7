"""The no-op job type the benchmarks run: `--app bench.noop_app:registry`.

`bench.noop` does nothing but note when it started (wall clock, `time.time()`),
so that the round-trip benchmark can tell submit->RUNNING as the handler saw it.
The peers' no-op tasks do the same amount of work: none.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from genai_jobs.handlers import JobContext, Registry

registry = Registry()

JOB_TYPE = "bench.noop"


class NoopPayload(BaseModel):
    pass


@registry.job_type(JOB_TYPE, payload=NoopPayload)
async def noop(ctx: JobContext, payload: NoopPayload) -> dict[str, float]:
    """Do nothing; answer when the handler started."""
    return {"started": time.time()}
