"""The app with no server at all: CPU per request for direct ASGI calls.

    python -m bench.app_alone   (with the benchmark's environment variables set)

Calls the same app as the servers get (bench/asgi_app.py `build_app`)
directly as an ASGI callable, one request at a time, on an asyncio and on a
uvloop loop, and prints one line "APP_ALONE {json}" with the median CPU
microseconds per request of each route over a few repeats. What a server adds
is its own measured CPU per request minus this (at concurrency 1 here, 64
there, so only a rough split).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import uvloop
from bench.asgi_app import FLOOR_BODY_ENV, FLOOR_PATH, build_app
from fastapi import FastAPI

from genai_jobs.handlers import load_registry
from genai_jobs.settings import Settings
from genai_jobs.store import create_store

STATUS_PATH_ENV = "BENCH_STATUS_PATH"
TOKEN_ENV = "BENCH_TOKEN"
REQUESTS = 2000
REPEATS = 3


def http_scope(path: str, token: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080),
        "headers": [(b"host", b"127.0.0.1:8080"), (b"authorization", f"Bearer {token}".encode())],
    }


async def call(app: FastAPI, scope: dict[str, Any]) -> int:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


async def measure() -> dict[str, float]:
    settings = Settings()
    store = create_store(settings.database_url)
    await store.open()
    try:
        app = build_app(store, load_registry(settings.app), settings,
                        json.loads(os.environ[FLOOR_BODY_ENV]))
        paths = {"status": os.environ[STATUS_PATH_ENV], "floor": FLOOR_PATH}
        cpu: dict[str, list[float]] = {route: [] for route in paths}
        for _ in range(REPEATS):
            for route, path in paths.items():
                scope = http_scope(path, os.environ[TOKEN_ENV])
                for _ in range(REQUESTS // 10):  # warm-up
                    if await call(app, scope) != 200:
                        raise RuntimeError(f"{route} did not answer 200")
                started = time.process_time()
                for _ in range(REQUESTS):
                    await call(app, scope)
                cpu[route].append((time.process_time() - started) * 1e6 / REQUESTS)
        return {route: statistics.median(values) for route, values in cpu.items()}
    finally:
        await store.close()


def main() -> None:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    report = {}
    for name, factory in factories.items():
        with asyncio.Runner(loop_factory=factory) as runner:
            report[name] = runner.run(measure())
    print("APP_ALONE " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
