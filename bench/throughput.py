"""2. End-to-end throughput: N no-op jobs submitted, drained by 2 worker processes.

For each store and each way of submitting, on a fresh scratch store:

- two `genai-jobs worker --app bench.noop_app:registry` processes (default
  concurrency, 4 jobs each at once) are started and idle first;
- `http`: the jobs are submitted through the Python client over HTTP
  (`genai_jobs.client.AsyncClient`, one client, 16 coroutines submitting
  concurrently, keep-alive connections) to `genai-jobs serve --workers 0`;
  `store`: through the store API in this process (`create_store(url)`,
  `store.submit(NewJob(...))`, 16 coroutines concurrently);
- jobs/s = N / (the last job's `finished_at` as the store wrote it - the wall
  clock just before the first submit). The store is polled for the count of
  terminal jobs every 0.2 s (bounded by a time-out); every job must be COMPLETED.

The peers run the same N in the same rounds (bench/peers_runner.py). The order
of the setups rotates every round.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Callable
from typing import Any

from bench import peers_runner
from bench.harness import (
    NOOP_APP,
    NOOP_TYPE,
    Run,
    Scratch,
    Service,
    cpu_seconds,
    noop_job,
    opened,
    rotating_rounds,
    scalar,
    scratch_store,
    services,
    spread,
)

from genai_jobs.client import AsyncClient

SUBMITTERS = 16
WORKER_PROCESSES = 2
POLL_SECONDS = 0.2
TERMINAL = "('COMPLETED', 'ERROR', 'ABORTED', 'EXPIRED')"


async def submit_http(base: str, token: str, jobs: int,
                      submitters: int = SUBMITTERS) -> tuple[float, float]:
    async with AsyncClient(base, token=token, timeout=60) as client:
        numbers = iter(range(jobs))

        async def submitter() -> None:
            for _ in numbers:
                await client.submit(NOOP_TYPE, {})

        started = time.time()
        await asyncio.gather(*(submitter() for _ in range(submitters)))
        return started, time.time()


async def submit_store(url: str, jobs: int) -> tuple[float, float]:
    async with opened(url) as store:
        numbers = iter(range(jobs))

        async def submitter() -> None:
            for _ in numbers:
                await store.submit(noop_job())

        started = time.time()
        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        return started, time.time()


def wait_drained(url: str, jobs: int, timeout: float) -> int:
    """Wait until `jobs` jobs are terminal; the count found (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = int(scalar(url, f"SELECT COUNT(*) FROM jobs WHERE status IN {TERMINAL}",
                          f"SELECT COUNT(*) FROM jobs WHERE status IN {TERMINAL}"))
        if done >= jobs:
            break
        time.sleep(POLL_SECONDS)
    return done


def one_run(ctx: Run, kind: str, via: str, jobs: int) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        scratch: Scratch = stack.enter_context(scratch_store(kind, ctx.folder))
        starters: list[Callable[[], Service]] = [
            lambda: Service.genai_jobs("worker", scratch.url, ctx.folder, "--app", NOOP_APP,
                                       wait=False)
            for _ in range(WORKER_PROCESSES)]
        if via == "http":
            starters.append(lambda: Service.genai_jobs(
                "serve", scratch.url, ctx.folder, "--workers", "0", "--app", NOOP_APP,
                wait=False))
        running = stack.enter_context(services(*starters))
        api_cpu, own_cpu = cpu_seconds(running[-1].pid), _own_cpu()
        if via == "http":
            started, submitted = asyncio.run(submit_http(running[-1].base, scratch.admin_token,
                                                         jobs))
        else:
            started, submitted = asyncio.run(submit_store(scratch.url, jobs))
        # Who was busy while submitting: the API process (http) and this process (the
        # client, or the store API itself), in CPU microseconds per job.
        api_us = (cpu_seconds(running[-1].pid) - api_cpu) * 1e6 / jobs if via == "http" else None
        own_us = (_own_cpu() - own_cpu) * 1e6 / jobs
        done = wait_drained(scratch.url, jobs, timeout=60 + jobs / 20)
        completed = int(scalar(scratch.url,
                               "SELECT COUNT(*) FROM jobs WHERE status = 'COMPLETED'",
                               "SELECT COUNT(*) FROM jobs WHERE status = 'COMPLETED'"))
        last = float(scalar(scratch.url, "SELECT MAX(finished_at) FROM jobs",
                            "SELECT EXTRACT(EPOCH FROM MAX(finished_at))::float8 FROM jobs"))
    if completed != jobs:
        return {"failed": f"{completed} of {jobs} COMPLETED ({done} terminal) in time"}
    seconds = last - started
    return {"jobs": jobs, "seconds": seconds, "jobs_per_second": jobs / seconds,
            "submit_seconds": submitted - started,
            "submit_per_second": jobs / (submitted - started),
            "api_cpu_us_per_submit": api_us, "submitter_cpu_us_per_submit": own_us}


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(ctx: Run) -> dict[str, Any]:
    jobs = ctx.size(5000, 500, smoke=40)
    ways = ("http",) if ctx.smoke else ("http", "store")
    setups = [f"ours-{kind}-{via}" for kind in ctx.backends for via in ways]
    setups += [f"peer-{name}" for name in peers_runner.available(ctx)]
    def run_ours(key: str) -> dict[str, Any]:
        _, kind, via = key.split("-")
        return one_run(ctx, kind, via, jobs)

    def run_peer(name: str) -> dict[str, Any]:
        return peers_runner.run_peer(name, "throughput", jobs, timeout=120 + jobs / 10)

    def summary(outcome: dict[str, Any]) -> str:
        submitted = outcome.get("submit_per_second")
        return (f"{outcome['jobs_per_second']:7.0f} jobs/s"
                + (f"  (submitted at {submitted:.0f}/s)" if submitted is not None else ""))

    samples = rotating_rounds(ctx, "throughput", setups, run_ours, run_peer, summary)
    return {"settings": {"jobs": jobs, "worker_processes": WORKER_PROCESSES,
                         "worker_concurrency": 4, "submitters": SUBMITTERS,
                         "rounds": ctx.rounds},
            "setups": setups, "samples": samples, "summary": summarize(samples, setups)}


def summarize(samples: list[dict[str, Any]], setups: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in setups:
        good = [s for s in samples if s["setup"] == key and "failed" not in s]
        out[key] = {"jobs_per_second": spread(s["jobs_per_second"] for s in good),
                    "failures": [s["failed"] for s in samples
                                 if s["setup"] == key and "failed" in s]}
        if good and "submit_per_second" in good[0]:
            out[key]["submit_per_second"] = spread(s["submit_per_second"] for s in good)
            out[key]["submitter_cpu_us"] = spread(s["submitter_cpu_us_per_submit"] for s in good)
            if good[0].get("api_cpu_us_per_submit") is not None:
                out[key]["api_cpu_us"] = spread(s["api_cpu_us_per_submit"] for s in good)
        versions = {str(s["version"]) for s in good if s.get("version")}
        if versions:
            out[key]["version"] = ", ".join(sorted(versions))
        if good and good[0].get("settings"):
            out[key]["settings"] = good[0]["settings"]
    peers = {k: v["jobs_per_second"]["median"] for k, v in out.items()
             if k.startswith("peer-") and v["jobs_per_second"]["n"]}
    best_peer = max(peers.items(), key=lambda kv: kv[1]) if peers else None
    for key, row in out.items():
        if key.startswith("ours-") and best_peer is not None and row["jobs_per_second"]["n"]:
            row["vs_best_peer"] = row["jobs_per_second"]["median"] / best_peer[1]
            row["best_peer"] = best_peer[0]
    return out
