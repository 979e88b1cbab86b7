"""5. Waiting clients: N concurrent `waitSeconds` long-polls held open on one API process.

Per backend and round, on a fresh scratch store:

1. N `bench.noop` jobs are submitted and claimed (RUNNING, 10-minute leases) by
   this process through the store API, so nothing else touches them;
2. `genai-jobs serve --workers 0` starts; it is warmed up (status requests and one
   long-poll that times out), then its RSS and CPU time are read: the baseline;
3. N raw asyncio HTTP/1.1 connections each send
   `GET /api/v2/genai/status/{its job}/?waitSeconds=60`, opened 100 at a time;
   the server's `genai_jobs_waiting_requests` gauge (`/metrics`) must reach N;
4. held for a few seconds: the server's RSS over the baseline (extra memory) and
   its CPU use while nothing happens;
5. this process completes the jobs one by one through the store API, one every
   10 ms (so each answer is a wake-up, not a queue of 1,000 answers at once), and
   notes the wall clock when each commit has returned; each waiter notes when its
   whole answer has arrived. Completion to answer = answer time - commit time (an
   answer processed before the completing call returned counts as 0).

The completions come from another process than the API's, as with separate
worker processes: SQLite's API process learns of them by polling the file's
change counter, PostgreSQL's by LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import re
import resource
import time
from typing import Any

from bench.harness import (
    HOST,
    NOOP_TYPE,
    Run,
    Scratch,
    Service,
    cpu_seconds,
    http_get,
    noop_job,
    opened,
    percentiles,
    rss_mib,
    scratch_store,
    spread,
)

from genai_jobs.domain import Lease

WAIT_SECONDS = 60
CONNECT_BATCH = 100
COMPLETE_INTERVAL = 0.010
GAUGE = re.compile(rb"^genai_jobs_waiting_requests (\S+)$", re.MULTILINE)


def raise_fd_limit(needed: int) -> None:
    """Enough file descriptors here and in the server (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))


def waiting_now(base: str) -> float:
    status, _, body = http_get(base + "/metrics")
    match = GAUGE.search(body) if status == 200 else None
    return float(match.group(1)) if match else -1.0


async def long_poll(port: int, job_id: str, token: str,
                    gate: asyncio.Semaphore) -> tuple[float, bytes]:
    """Send one long-poll; (when its whole answer arrived, status line + body)."""
    async with gate:  # at most CONNECT_BATCH connections being opened at once
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(f"GET /api/v2/genai/status/{job_id}/?waitSeconds={WAIT_SECONDS} HTTP/1.1\r\n"
                     f"Host: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        await writer.drain()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length:\s*(\d+)", head)
        body = await reader.readexactly(int(length.group(1))) if length else b""
        return time.time(), head.split(b"\r\n", 1)[0] + b" " + body
    finally:
        writer.close()


async def claim_all(url: str, count: int) -> list[Lease]:
    async with opened(url) as store:
        for _ in range(count):
            await store.submit(noop_job())
        leases: list[Lease] = []
        while len(leases) < count:  # bounded: each pass claims, or the jobs are gone
            got = await store.claim("bench-waiters", [NOOP_TYPE], 600, count - len(leases))
            if not got:
                break
            leases.extend(got)
        return leases


async def hold_and_wake(ctx: Run, scratch: Scratch, server: Service, leases: list[Lease],
                        hold_seconds: float) -> dict[str, Any]:
    port = server.port or 0
    pid = server.pid
    baseline_rss = rss_mib(pid)
    opening = time.monotonic()
    gate = asyncio.Semaphore(CONNECT_BATCH)

    waiters = {lease.job_id: asyncio.ensure_future(
        long_poll(port, str(lease.job_id), scratch.admin_token, gate)) for lease in leases}
    deadline = time.monotonic() + 60
    seen = 0.0
    while time.monotonic() < deadline:
        seen = await asyncio.to_thread(waiting_now, server.base)
        if seen >= len(leases):
            break
        await asyncio.sleep(0.2)
    opened_seconds = time.monotonic() - opening
    if seen < len(leases):
        raise RuntimeError(f"only {seen:.0f} of {len(leases)} long-polls waiting after 60 s")
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(hold_seconds)
    held_cpu_share = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
    held_rss = rss_mib(pid)

    committed: dict[Any, float] = {}
    async with opened(scratch.url) as store:
        for lease in leases:
            await store.complete(lease, {"started": 0.0}, None)
            committed[lease.job_id] = time.time()
            await asyncio.sleep(COMPLETE_INTERVAL)
    done, pending = await asyncio.wait(set(waiters.values()), timeout=30)
    for task in pending:
        task.cancel()
    wake_ms, wrong = [], 0
    for job_id, task in waiters.items():
        if task in done and task.exception() is None:
            answered, text = task.result()
            if b" 200 " in text.split(b"\n", 1)[0] and b'"COMPLETED"' in text:
                # An answer can beat the completing call back to this loop: count it as 0.
                wake_ms.append(max(0.0, answered - committed[job_id]) * 1000)
                continue
        wrong += 1
    return {
        "waiters": len(leases), "answered": len(wake_ms), "wrong_or_missing": wrong,
        "open_seconds": opened_seconds,
        "baseline_rss_mib": baseline_rss, "held_rss_mib": held_rss,
        "extra_rss_mib": held_rss - baseline_rss,
        "held_cpu_share": held_cpu_share, "hold_seconds": hold_seconds,
        "after_rss_mib": rss_mib(pid),
        "wake": percentiles(wake_ms), "wake_max_ms": max(wake_ms, default=float("nan")),
        "wake_ms": [round(w, 3) for w in wake_ms],
    }


def one_round(ctx: Run, kind: str, count: int, hold_seconds: float) -> dict[str, Any]:
    with scratch_store(kind, ctx.folder) as scratch:
        leases = asyncio.run(claim_all(scratch.url, count))
        if len(leases) != count:
            raise RuntimeError(f"claimed {len(leases)} of {count} jobs")
        with Service.genai_jobs("serve", scratch.url, ctx.folder, "--workers", "0") as server:
            probe = f"{server.base}/api/v2/genai/status/{leases[0].job_id}/"
            for _ in range(50):
                http_get(probe, scratch.admin_token)
            http_get(probe + "?waitSeconds=1", scratch.admin_token)  # the long-poll path, warm
            time.sleep(1.0)
            return asyncio.run(hold_and_wake(ctx, scratch, server, leases, hold_seconds))


def run(ctx: Run) -> dict[str, Any]:
    count = ctx.size(1000, 300, smoke=20)
    hold = ctx.size(5.0, 2.0, smoke=0.5)
    raise_fd_limit(count * 2 + 256)
    samples = []
    for round_no in range(ctx.rounds):
        for kind in ctx.backends:
            if ctx.out_of_time(f"waiters {kind} round {round_no}"):
                break
            try:
                outcome = one_round(ctx, kind, count, hold)
            except Exception as exc:
                outcome = {"failed": f"{type(exc).__name__}: {exc}"}
            outcome.update(backend=kind, round=round_no)
            samples.append(outcome)
            if "failed" in outcome:
                ctx.log(f"  round {round_no} {kind:8} FAILED: {outcome['failed']}")
            else:
                ctx.log(f"  round {round_no} {kind:8} {count} waiting: +"
                        f"{outcome['extra_rss_mib']:.1f} MiB, CPU "
                        f"{outcome['held_cpu_share']:.1%} of a core; completion->answer p50 "
                        f"{outcome['wake']['p50']:.1f} ms p99 {outcome['wake']['p99']:.1f} ms "
                        f"({outcome['answered']} answered)")
    summary = {}
    for kind in ctx.backends:
        good = [s for s in samples if s["backend"] == kind and "failed" not in s]
        summary[kind] = {
            "extra_rss_mib": spread(s["extra_rss_mib"] for s in good),
            "baseline_rss_mib": spread(s["baseline_rss_mib"] for s in good),
            "held_cpu_share": spread(s["held_cpu_share"] for s in good),
            "wake_p50_ms": spread(s["wake"]["p50"] for s in good),
            "wake_p99_ms": spread(s["wake"]["p99"] for s in good),
            "wake_max_ms": spread(s["wake_max_ms"] for s in good),
            "missing": sum(s["wrong_or_missing"] for s in good),
            "failures": [s["failed"] for s in samples if s["backend"] == kind and "failed" in s],
        }
    return {"settings": {"waiters": count, "hold_seconds": hold, "wait_seconds": WAIT_SECONDS,
                         "complete_interval_ms": COMPLETE_INTERVAL * 1000,
                         "connect_batch": CONNECT_BATCH, "rounds": ctx.rounds},
            "samples": samples, "summary": summary}

