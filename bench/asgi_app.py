"""The application the ASGI-server benchmark serves.

It is the real genai-jobs API (`genai_jobs.api.create_app`) over the SQLite
store named by `GENAI_JOBS_DATABASE_URL`, plus one extra route, FLOOR_PATH,
that returns a fixed JSON body with no store, no auth and no response model:
the framework floor, to tell the server's share of a request from the app's.

`create_app` is not an ASGI callable itself but a factory for servers run from
the command line (`uvicorn --factory`, `granian --factory`). `create_app` in
genai_jobs leaves the store's life cycle to its caller; a server started from
the command line has no caller of ours, so the factory hands the store to the
app's ASGI lifespan: it is opened (and migrated) at startup, inside the
server's own event loop, which is where `SQLiteStore.open` must run (it starts
a watcher task and binds the writer thread's futures to that loop), and closed
at shutdown. In-loop runners (bench/inloop.py) open the store themselves, as
`genai_jobs.runtime.serve` does, and use `build_app` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request

from genai_jobs.api import create_app as create_api
from genai_jobs.api.deps import Services, get_services
from genai_jobs.handlers import Registry, load_registry
from genai_jobs.settings import Settings
from genai_jobs.store import Store, create_store

FLOOR_PATH = "/bench/floor"
# The JSON text the floor route returns; the benchmark sets it to the status
# route's own answer for its job, so both routes send the same body.
FLOOR_BODY_ENV = "BENCH_FLOOR_JSON"
# "1": replace the app's `get_services` dependency (a plain `def`, which FastAPI
# runs in its thread pool, one thread hop per request) by an `async def` twin,
# to see what that hop costs on each server. Off by default: the real app.
ASYNC_SERVICES_ENV = "BENCH_ASYNC_SERVICES"


def build_app(store: Store, registry: Registry, settings: Settings,
              floor_body: dict[str, Any]) -> FastAPI:
    """The real API over `store` (the caller opens it) plus the floor route."""
    app = create_api(store, registry, settings)
    if os.environ.get(ASYNC_SERVICES_ENV) == "1":
        app.dependency_overrides[get_services] = get_services_async

    @app.get(FLOOR_PATH, response_model=None, include_in_schema=False)
    async def floor() -> dict[str, Any]:
        return floor_body

    return app


async def get_services_async(request: Request) -> Services:
    """`genai_jobs.api.deps.get_services` as a coroutine: no thread-pool hop."""
    services: Services = request.app.state.services
    return services


def announce_loop(where: str) -> None:
    """One line on stderr naming the running loop, so the benchmark can check it."""
    loop = asyncio.get_running_loop()
    print(f"bench-app: {where} pid={os.getpid()} "
          f"loop={type(loop).__module__}.{type(loop).__qualname__}",
          file=sys.stderr, flush=True)


def create_app() -> FastAPI:
    """Factory for `uvicorn --factory` and `granian --factory`: the store opens in the lifespan."""
    settings = Settings()
    store = create_store(settings.database_url)
    app = build_app(store, load_registry(settings.app), settings,
                    json.loads(os.environ[FLOOR_BODY_ENV]))

    @contextlib.asynccontextmanager
    async def store_lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        try:
            await store.migrate()
            announce_loop("lifespan startup")
            yield
        finally:
            await store.close()

    # FastAPI takes a lifespan only in its constructor, and genai_jobs' create_app
    # builds the FastAPI object; Starlette's router keeps it here and calls it for
    # the ASGI lifespan scope. No per-request cost (an ASGI wrapper would add one).
    app.router.lifespan_context = store_lifespan
    return app
