"""The whole status route in-process, its store on psycopg or on asyncpg.

    .venv/bin/python -m bench.pg_route [--rounds 5] [--out bench/results/pg-drivers]

`GET /api/v2/genai/status/{id}/` through the real app (`create_app` from
`genai_jobs.api`: auth header, token hash, token and job lookups, the
response model) called directly as an ASGI callable, no HTTP server. The
store is a `PostgresStore` whose `find_token` and `get` go through the
contender under test (bench/pg_clients.py), so the only thing that changes is
the driver and pool underneath. How much of a status request the driver is,
and what a switch would save end to end.

One request at a time (client CPU per request, p50) and 32 at once (req/s).
Contenders rotate every round. A scratch database, dropped at the end.

With --split: instead, one request at a time, the route and the store's
lookup alone (`find_token` + `get`) measured back to back in one process,
1,500 requests x 3 each: how much of the route's CPU is the store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any
from uuid import UUID

from bench.pg_clients import Contender, contenders, status_request
from bench.pg_drivers import (
    DEFAULT_ADMIN_URL,
    TOKEN_TENANT,
    Admin,
    Sample,
    build,
    create_database,
    drop_database,
    pct,
    run_load,
)
from fastapi import FastAPI

from genai_jobs.api import create_app
from genai_jobs.domain import Job, TokenRecord
from genai_jobs.handlers import load_registry
from genai_jobs.settings import Settings
from genai_jobs.store.postgres.store import PostgresStore
from genai_jobs.tokens import hash_secret, new_secret

CONTENDERS = ["psycopg-store", "psycopg-poll-drain", "asyncpg", "asyncpg-noreset"]


class RoutedStore(PostgresStore):
    """The real store, its two status-route reads sent through a contender."""

    def __init__(self, url: str, contender: Contender) -> None:
        super().__init__(url, pool_size=1)
        self.contender = contender

    async def find_token(self, secret_hash: str) -> TokenRecord | None:
        return await self.contender.find_token(secret_hash)

    async def get(self, job_id: UUID, tenant: str | None = None) -> Job:
        return await self.contender.get(job_id, tenant)


async def call(app: FastAPI, scope: dict[str, Any]) -> int:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


def scope_for(path: str, secret: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080),
        "headers": [(b"host", b"127.0.0.1:8080"), (b"authorization", f"Bearer {secret}".encode())],
    }


async def one(url: str, key: str, rnd: int, scopes: list[dict[str, Any]], admin: Admin,
              args: argparse.Namespace) -> list[dict[str, Any]]:
    c = contenders(url)[key]()
    store = RoutedStore(url, c)
    await c.open()
    await store.open()
    rows = []
    try:
        settings = Settings()
        app = create_app(store, load_registry(settings.app), settings)
        it = iter(range(10**9))

        async def request() -> None:
            status = await call(app, scopes[next(it) % len(scopes)])
            if status != 200:
                raise RuntimeError(f"status route answered {status}")

        for conc in (1, 32) if rnd % 2 == 0 else (32, 1):
            await run_load(request, conc, args.warmup, 1_000_000)
            sample = Sample(admin, c.app_name)
            await sample.start()
            n, lat, errors = await run_load(request, conc, args.duration, 1_000_000)
            s = await sample.stop()
            rows.append({"contender": key, "round": rnd, "param": conc, "n": n,
                         "rate": n / s["wall_s"], "p50_ms": pct(lat, 0.5),
                         "p99_ms": pct(lat, 0.99),
                         "client_us": 1e6 * s["client_cpu_s"] / max(n, 1),
                         "backend_us": 1e6 * s["backend_cpu_s"] / max(n, 1),
                         "others_busy": s["others_busy"], "errors": len(errors),
                         "errors_sample": errors[:3]})
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                              for k, v in rows[-1].items()}), flush=True)
    finally:
        await store.close()
        await c.close()
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for key in CONTENDERS:
        for conc in (1, 32):
            rs = [r for r in rows if r["contender"] == key and r["param"] == conc]
            if not rs:
                continue
            entry: dict[str, Any] = {"contender": key, "param": conc, "rounds": len(rs),
                                     "errors": sum(r["errors"] for r in rs)}
            for m in ("rate", "p50_ms", "p99_ms", "client_us", "backend_us", "others_busy"):
                vals = [r[m] for r in rs]
                entry[m] = {"median": statistics.median(vals), "min": min(vals),
                            "max": max(vals)}
            for m in ("rate", "client_us"):
                ratios = []
                for r in rs:
                    base = [b for b in rows if b["contender"] == "psycopg-store"
                            and b["param"] == conc and b["round"] == r["round"]]
                    if base and base[0][m]:
                        ratios.append(r[m] / base[0][m])
                if ratios:
                    entry[f"{m}_vs_store"] = {"median": statistics.median(ratios),
                                              "min": min(ratios), "max": max(ratios)}
            out.append(entry)
    return out


async def split(url: str, scopes: list[dict[str, Any]], secret_hash: str,
                job_ids: list[UUID]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("psycopg-poll-drain", "asyncpg-noreset"):
        c = contenders(url)[key]()
        store = RoutedStore(url, c)
        await c.open()
        await store.open()
        try:
            settings = Settings()
            app = create_app(store, load_registry(settings.app), settings)
            cpu: dict[str, list[float]] = {"route": [], "store alone": []}
            for _ in range(3):
                for what in cpu:
                    started = time.process_time()
                    for i in range(1500):
                        if what == "route":
                            if await call(app, scopes[i % len(scopes)]) != 200:
                                raise RuntimeError("the status route did not answer 200")
                        else:
                            await status_request(c, secret_hash, job_ids[i % len(scopes)])
                    cpu[what].append(round((time.process_time() - started) / 1500 * 1e6))
            out[key] = {"client_cpu_us_per_request": cpu}
            print(key, cpu, flush=True)
        finally:
            await store.close()
            await c.close()
    return out


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    name, url = create_database(args.admin_url)
    admin = Admin(url)
    try:
        data = await build(url, args.jobs)
        secret = new_secret()
        setup = PostgresStore(url)
        await setup._pool.open(wait=True, timeout=10)
        try:
            await setup.create_token(TOKEN_TENANT, False, hash_secret(secret))
        finally:
            await setup._pool.close()
        scopes = [scope_for(f"/api/v2/genai/status/{job_id}/", secret)
                  for job_id in data.job_ids[:200]]
        if args.split:
            return {"split": await split(url, scopes, hash_secret(secret), data.job_ids[:200])}
        rows: list[dict[str, Any]] = []
        for rnd in range(args.rounds):
            keys = CONTENDERS[rnd % len(CONTENDERS):] + CONTENDERS[:rnd % len(CONTENDERS)]
            for key in keys:
                rows += await one(url, key, rnd, scopes, admin, args)
        return {"summary": summarise(rows), "rows": rows}
    finally:
        await admin.close()
        drop_database(args.admin_url, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--split", action="store_true",
                        help="route against the store's lookup alone, one process")
    parser.add_argument("--out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("psycopg", "psycopg.pool", "asyncpg", "genai_jobs"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    t0 = time.monotonic()
    result = asyncio.run(amain(args))
    result["seconds"] = round(time.monotonic() - t0)
    if args.split:
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "route-split.json").write_text(json.dumps(result, indent=1) + "\n")
        return
    for e in result["summary"]:
        print(f"{e['contender']:20} c={e['param']:<3} rate {e['rate']['median']:7.0f} "
              f"({e['rate']['min']:.0f}-{e['rate']['max']:.0f})"
              f" vs store {e.get('rate_vs_store', {}).get('median', float('nan')):.2f}"
              f" client CPU {e['client_us']['median']:.0f} us"
              f" ({e.get('client_us_vs_store', {}).get('median', float('nan')):.2f})"
              f" p50 {e['p50_ms']['median']:.2f} ms")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "route.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
