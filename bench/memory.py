"""6. Memory: resident memory of each kind of process at rest.

Per backend and round, each process on a fresh scratch store of its own (the three
start side by side: resident memory is per process):

- `api`: `genai-jobs serve --workers 0`, after 20 status requests (so the request
  path is imported and warm), then 2 s of rest;
- `worker`: `genai-jobs worker` (built-in job types), idle, after 2 s of rest;
- `serve`: `genai-jobs serve` (default: 1 in-process worker) after 20 status
  requests and 2 s of rest.

VmRSS is the figure asked for; PSS (shared pages split among the processes that
map them) is noted beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bench.harness import (
    Run,
    Scratch,
    Service,
    http_get,
    noop_job,
    opened,
    pss_mib,
    rss_mib,
    scratch_store,
    spread,
)

REST_SECONDS = 2.0
WARM_REQUESTS = 20
KINDS = {"api": ("serve", "--workers", "0"), "worker": ("worker",), "serve": ("serve",)}


async def _one_job(url: str) -> str:
    async with opened(url) as store:
        outcome = await store.submit(noop_job(job_type="diagnostics.sleep",
                                              payload={"seconds": 0.0}))
        return str(outcome.job.id)


def one_round(ctx: Run, backend: str) -> dict[str, dict[str, float]]:
    """Each kind of process on a store of its own, started side by side (RSS is per process)."""
    with contextlib.ExitStack() as stack:
        started: dict[str, tuple[Service, Scratch, str]] = {}
        for kind, (command, *args) in KINDS.items():
            scratch = stack.enter_context(scratch_store(backend, ctx.folder))
            job_id = asyncio.run(_one_job(scratch.url))
            process = stack.enter_context(Service.genai_jobs(command, scratch.url, ctx.folder,
                                                             *args, wait=False))
            started[kind] = (process, scratch, job_id)
        for process, scratch, job_id in started.values():
            process.ready()
            if process.port is not None:
                for _ in range(WARM_REQUESTS):
                    http_get(f"{process.base}/api/v2/genai/status/{job_id}/",
                             scratch.admin_token)
        time.sleep(ctx.size(REST_SECONDS, REST_SECONDS, smoke=0.3))
        return {kind: {"rss_mib": rss_mib(process.pid), "pss_mib": pss_mib(process.pid)}
                for kind, (process, _, _) in started.items()}


def run(ctx: Run) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    for round_no in range(ctx.rounds):
        for backend in ctx.backends:
            if ctx.out_of_time(f"memory {backend} round {round_no}"):
                break
            try:
                measured = one_round(ctx, backend)
            except Exception as exc:
                ctx.log(f"  round {round_no} {backend:8} FAILED: {type(exc).__name__}: {exc}")
                samples.append({"backend": backend, "process": "all", "round": round_no,
                                "failed": f"{type(exc).__name__}: {exc}"})
                continue
            for kind, figures in measured.items():
                samples.append({"backend": backend, "process": kind, "round": round_no,
                                **figures})
                ctx.log(f"  round {round_no} {backend:8} {kind:6} RSS "
                        f"{figures['rss_mib']:6.1f} MiB  PSS {figures['pss_mib']:6.1f} MiB")
    summary: dict[str, Any] = {}
    for backend in ctx.backends:
        for kind in KINDS:
            good = [s for s in samples if s["backend"] == backend and s["process"] == kind
                    and "failed" not in s]
            summary[f"{backend}-{kind}"] = {"rss_mib": spread(s["rss_mib"] for s in good),
                                            "pss_mib": spread(s["pss_mib"] for s in good)}
    return {"settings": {"rest_seconds": REST_SECONDS, "warm_requests": WARM_REQUESTS,
                         "rounds": ctx.rounds},
            "samples": samples, "summary": summary}
