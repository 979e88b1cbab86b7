"""The floors the status route is compared with, served exactly as `serve` serves it.

    python bench/floors.py --kind fastapi|asgi --port N --body-file FILE

Both answer `GET /bench/floor` with the JSON in FILE (the status route's own
answer for the benchmark's job; the floors skip its `Retry-After` header):

- fastapi: a bare FastAPI route returning that JSON as a dict (no auth, no
  store, no response model): the framework floor;
- asgi: a raw ASGI callable sending the bytes: the Python floor (server only).

The server is uvicorn as `genai_jobs.runtime.serve` configures it: `Server.serve()`
awaited in the process's own asyncio loop, httptools, lifespan off, no proxy
headers, log level warning. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

PATH = "/bench/floor"


def fastapi_floor(body: bytes) -> FastAPI:
    app = FastAPI()
    document = json.loads(body)

    @app.get(PATH)
    async def floor() -> dict[str, Any]:
        return document  # type: ignore[no-any-return]

    return app


def asgi_floor(body: bytes) -> Any:
    start = {"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    not_found = {"type": "http.response.start", "status": 404,
                 "headers": [(b"content-length", b"0")]}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == PATH:
            await send(start)
            await send({"type": "http.response.body", "body": body})
        else:
            await send(not_found)
            await send({"type": "http.response.body", "body": b""})

    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling, as `genai_jobs.runtime._Server`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(app: Any, port: int) -> None:
    server = _Server(uvicorn.Config(
        app, host="127.0.0.1", port=port, http="httptools", lifespan="off",
        log_level="warning", proxy_headers=False, timeout_graceful_shutdown=5))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    await server.serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("fastapi", "asgi"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    args = parser.parse_args()
    body = args.body_file.read_bytes()
    app = fastapi_floor(body) if args.kind == "fastapi" else asgi_floor(body)
    asyncio.run(serve(app, args.port))


if __name__ == "__main__":
    main()
