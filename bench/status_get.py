"""1. Status GET under wrk: our route on each store beside the framework and Python floors.

Servers, all started once and kept for every round, all single-process on 127.0.0.1:

- `ours-<store>`: `genai-jobs serve --workers 0` on a scratch store holding one admin
  token and one real queued job (`diagnostics.sleep`, nobody runs it): every
  request parses the Bearer header, hashes it, looks the token up, reads the job
  and writes the StatusResponse;
- `floor-fastapi`: a bare FastAPI route returning the same JSON (bench/floors.py);
- `floor-asgi`: a raw ASGI app sending the same bytes (bench/floors.py);

the floors served by uvicorn configured as `runtime.serve` does. Each round
runs every server in a rotated order: wrk for 1 s (warm-up), then wrk for the
measured seconds, 64 connections, 2 threads. The server's own CPU time per
request comes from /proc. Ratios ours/floor are taken within each round and
then summarised (median, min, max).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

from bench.harness import (
    BENCH,
    Run,
    Scratch,
    Service,
    cpu_seconds,
    free_port,
    http_get,
    noop_job,
    opened,
    run_wrk,
    scratch_store,
    service_env,
    spread,
    wrk_available,
)

CONNECTIONS = 64
THREADS = 2
WARMUP_SECONDS = 1
FLOOR_PATH = "/bench/floor"


def status_path(job_id: str) -> str:
    return f"/api/v2/genai/status/{job_id}/"


async def _one_job(url: str) -> str:
    async with opened(url) as store:
        outcome = await store.submit(noop_job(job_type="diagnostics.sleep",
                                              payload={"seconds": 3600.0}))
        return str(outcome.job.id)


def run(ctx: Run) -> dict[str, Any]:
    if not wrk_available():
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    seconds = ctx.size(5, 2, smoke=1)
    rounds = ctx.size(5, 1, smoke=1)
    with contextlib.ExitStack() as stack:
        targets, body = start_servers(ctx, stack)
        keys = list(targets)
        samples: list[dict[str, Any]] = []
        for round_no in range(rounds):
            if ctx.out_of_time(f"status GET round {round_no}"):
                break
            order = keys[round_no % len(keys):] + keys[:round_no % len(keys)]
            for key in order:
                samples.append(measure(ctx, key, targets[key], round_no, seconds))
    return {"settings": {"connections": CONNECTIONS, "threads": THREADS,
                         "warmup_seconds": 0 if ctx.smoke else WARMUP_SECONDS,
                         "seconds": seconds, "rounds": rounds, "body_bytes": len(body)},
            "setups": keys, "samples": samples, "summary": summarize(samples, keys)}


def start_servers(ctx: Run, stack: contextlib.ExitStack) -> tuple[dict[str, Any], bytes]:
    """Our server on each store, then the floors with our answer's body; all checked."""
    targets: dict[str, dict[str, Any]] = {}
    ours: dict[str, tuple[Scratch, str, Service]] = {}
    for kind in ctx.backends:
        scratch = stack.enter_context(scratch_store(kind, ctx.folder))
        job_id = asyncio.run(_one_job(scratch.url))
        ours[kind] = (scratch, job_id, stack.enter_context(Service.genai_jobs(
            "serve", scratch.url, ctx.folder, "--workers", "0", wait=False)))
    body = b""
    for kind, (scratch, job_id, server) in ours.items():
        server.ready()
        url = server.base + status_path(job_id)
        status, headers, answer = http_get(url, scratch.admin_token)
        if status != 200 or headers.get("retry-after") != "1":
            raise RuntimeError(f"status route answered {status} {headers} {answer!r}")
        if http_get(url)[0] != 401:
            raise RuntimeError("status route without a token did not answer 401")
        body = body or answer
        targets[f"ours-{kind}"] = {"url": url, "token": scratch.admin_token, "pid": server.pid}
    body_file = ctx.folder / "status-body.json"
    body_file.write_bytes(body)
    floors = {}
    for kind in ("fastapi", "asgi"):
        port = free_port()
        floors[kind] = stack.enter_context(Service(
            [sys.executable, str(BENCH / "floors.py"), "--kind", kind,
             "--port", str(port), "--body-file", str(body_file)],
            service_env("sqlite:///unused.db"), ctx.folder / f"floor-{kind}.log", port))
    for kind, floor in floors.items():
        floor.wait_http(FLOOR_PATH)
        status, _, answer = http_get(floor.base + FLOOR_PATH)
        if status != 200 or json.loads(answer) != json.loads(body):
            raise RuntimeError(f"floor-{kind} answered {status} {answer!r}")
        targets[f"floor-{kind}"] = {"url": floor.base + FLOOR_PATH, "token": None,
                                    "pid": floor.pid}
    return targets, body


def measure(ctx: Run, key: str, target: dict[str, Any], round_no: int,
            seconds: int) -> dict[str, Any]:
    if not ctx.smoke:
        run_wrk(target["url"], target["token"], WARMUP_SECONDS, CONNECTIONS, THREADS)
    cpu_before = cpu_seconds(target["pid"])
    report = run_wrk(target["url"], target["token"], seconds, CONNECTIONS, THREADS)
    cpu = cpu_seconds(target["pid"]) - cpu_before
    sample = {
        "setup": key, "round": round_no, "rps": report["rps"],
        "p50_ms": report["p50_us"] / 1000, "p90_ms": report["p90_us"] / 1000,
        "p99_ms": report["p99_us"] / 1000, "errors": report["errors"],
        "requests": report["requests"],
        "cpu_us_per_request": cpu * 1e6 / max(report["requests"], 1),
    }
    ctx.log(f"  round {round_no} {key:15} {sample['rps']:7.0f} req/s  "
            f"p50 {sample['p50_ms']:6.2f} ms  p99 {sample['p99_ms']:6.2f} ms  "
            f"cpu {sample['cpu_us_per_request']:5.0f} us/req"
            + (f"  ERRORS {sample['errors']}" if sample["errors"] else ""))
    return sample


def summarize(samples: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        mine = [s for s in samples if s["setup"] == key]
        out[key] = {
            "rps": spread(s["rps"] for s in mine),
            "p50_ms": spread(s["p50_ms"] for s in mine),
            "p99_ms": spread(s["p99_ms"] for s in mine),
            "cpu_us_per_request": spread(s["cpu_us_per_request"] for s in mine),
            "errors": sum(s["errors"] for s in mine),
        }
        # Ratios to each floor within the same round.
        for floor in ("floor-fastapi", "floor-asgi"):
            if key.startswith("ours-"):
                ratios = []
                for sample in mine:
                    match = [s for s in samples
                             if s["setup"] == floor and s["round"] == sample["round"]]
                    if match:
                        ratios.append(sample["rps"] / match[0]["rps"])
                out[key][f"vs_{floor}"] = spread(ratios)
    return out
