"""3. Round trip: one no-op job at a time, with idle workers, N times per round.

Setups, each on a fresh scratch store:

- `ours-<store>-inprocess`: `genai-jobs serve --workers 1` (API and worker in one
  process, the one-command start);
- `ours-<store>-worker`: `genai-jobs serve --workers 0` plus one
  `genai-jobs worker` process (how PostgreSQL deployments run).

The client is the project's own `AsyncClient` (one keep-alive session) in this
process, as the peers are driven by their own clients. Per job:

- submit: `client.submit("bench.noop")` (`POST /api/v2/genai/jobs/`), the clock
  started just before;
- submit->COMPLETED: `client.wait(id)`, which long-polls `GET /api/v2/genai/jobs/
  {id}/?waitSeconds=...` until the job is terminal (each long-poll answers as soon
  as the status changes), the clock stopped when the COMPLETED answer has arrived:
  what a client sees;
- submit->RUNNING: the no-op handler notes `time.time()` when it starts, and that
  minus the wall clock just before the submit is the time until the job ran
  (read from the job's result, outside the timing).

20 unrecorded jobs warm up each setup; 10 ms pass between jobs (as the peers
do) so the worker is idle when the next job arrives. The peers run the same N
in the same rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from bench import peers_runner
from bench.harness import (
    NOOP_APP,
    NOOP_TYPE,
    Run,
    Service,
    percentiles,
    rotating_rounds,
    scratch_store,
    services,
    spread,
)

from genai_jobs.client import AsyncClient
from genai_jobs.client.models import JobState

WARMUP_JOBS = 20
PAUSE_SECONDS = 0.01
LONG_POLL_SECONDS = 10


async def one_job(client: AsyncClient) -> tuple[float, float]:
    """(submit->RUNNING ms, submit->COMPLETED ms) of one job."""
    wall = time.time()
    started = time.perf_counter()
    submitted = await client.submit(NOOP_TYPE, {})
    job = await client.wait(submitted.status_id, timeout=LONG_POLL_SECONDS)
    completed_ms = (time.perf_counter() - started) * 1000
    if job.status is not JobState.COMPLETED:
        raise RuntimeError(f"job {job.status_id} ended {job.status.value}")
    return (job.result["started"] - wall) * 1000, completed_ms


async def timed_jobs(base: str, token: str, warmup: int,
                     jobs: int) -> tuple[list[float], list[float]]:
    async with AsyncClient(base, token=token, timeout=LONG_POLL_SECONDS + 20) as client:
        for _ in range(warmup):
            await one_job(client)
        running_ms, completed_ms = [], []
        for _ in range(jobs):
            await asyncio.sleep(PAUSE_SECONDS)
            run_ms, done_ms = await one_job(client)
            running_ms.append(round(run_ms, 3))
            completed_ms.append(round(done_ms, 3))
    return running_ms, completed_ms


def ours(ctx: Run, kind: str, layout: str, jobs: int) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(scratch_store(kind, ctx.folder))
        starters: list[Callable[[], Service]] = [lambda: Service.genai_jobs(
            "serve", scratch.url, ctx.folder, "--app", NOOP_APP,
            "--workers", "1" if layout == "inprocess" else "0", wait=False)]
        if layout == "worker":
            starters.append(lambda: Service.genai_jobs("worker", scratch.url, ctx.folder,
                                                       "--app", NOOP_APP, wait=False))
        running = stack.enter_context(services(*starters))
        running_ms, completed_ms = asyncio.run(timed_jobs(
            running[0].base, scratch.admin_token,
            ctx.size(WARMUP_JOBS, WARMUP_JOBS, smoke=2), jobs))
    return {"jobs": jobs, "running_ms": running_ms, "completed_ms": completed_ms}


def run(ctx: Run) -> dict[str, Any]:
    jobs = ctx.size(300, 100, smoke=10)
    layouts = ("inprocess",) if ctx.smoke else ("inprocess", "worker")
    setups = [f"ours-{kind}-{layout}" for kind in ctx.backends for layout in layouts]
    setups += [f"peer-{name}" for name in peers_runner.available(ctx)]
    def run_ours(key: str) -> dict[str, Any]:
        _, kind, layout = key.split("-")
        return ours(ctx, kind, layout, jobs)

    def run_peer(name: str) -> dict[str, Any]:
        return peers_runner.run_peer(name, "roundtrip", jobs, timeout=180 + jobs)

    def summary(outcome: dict[str, Any]) -> str:
        outcome["completed"] = percentiles(outcome.get("completed_ms", []))
        outcome["running"] = percentiles(outcome.get("running_ms", []))
        return (f"submit->RUNNING p50 {outcome['running']['p50']:6.2f} ms   submit->COMPLETED"
                f" p50 {outcome['completed']['p50']:6.2f} p90 {outcome['completed']['p90']:6.2f}"
                f" p99 {outcome['completed']['p99']:6.2f} ms")

    samples = rotating_rounds(ctx, "round trip", setups, run_ours, run_peer, summary)
    return {"settings": {"jobs": jobs, "warmup_jobs": WARMUP_JOBS,
                         "pause_ms": PAUSE_SECONDS * 1000,
                         "long_poll_seconds": LONG_POLL_SECONDS, "rounds": ctx.rounds},
            "setups": setups, "samples": samples, "summary": summarize(samples, setups)}


def summarize(samples: list[dict[str, Any]], setups: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in setups:
        good = [s for s in samples if s["setup"] == key and "failed" not in s]
        row: dict[str, Any] = {"failures": [s["failed"] for s in samples
                                            if s["setup"] == key and "failed" in s]}
        for what in ("completed", "running"):
            for pct in ("p50", "p90", "p99"):
                row[f"{what}_{pct}"] = spread(s[what][pct] for s in good)
        versions = {str(s["version"]) for s in good if s.get("version")}
        if versions:
            row["version"] = ", ".join(sorted(versions))
        if good and good[0].get("settings"):
            row["settings"] = good[0]["settings"]
        out[key] = row
    peers = {k: v["completed_p50"]["median"] for k, v in out.items()
             if k.startswith("peer-") and v["completed_p50"]["n"]}
    best = min(peers.items(), key=lambda kv: kv[1]) if peers else None
    for key, row in out.items():
        if key.startswith("ours-") and best is not None and row["completed_p50"]["n"]:
            row["vs_best_peer"] = row["completed_p50"]["median"] / best[1]
            row["best_peer"] = best[0]
    return out
