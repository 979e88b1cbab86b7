"""`genai-jobs serve` as src/genai_jobs/runtime.py runs it, with the server and loop swappable.

    python -m bench.inloop --server uvicorn|granian --loop asyncio|uvloop --port N

Like `runtime.serve`: one event loop holds the HTTP server, the in-process
workers (`GENAI_JOBS_WORKERS`, default 1) and the maintenance sweep; the
store is opened by this process before the server starts (no ASGI lifespan);
the server installs no signal handlers of its own, and SIGTERM/SIGINT stop the
workers first, then the server. The app also has the benchmark's floor route.

- uvicorn: `uvicorn.Server(...).serve()` with `capture_signals` disabled,
  exactly as runtime.py's `_Server`; `--http auto` picks httptools when installed.
- granian: `granian.server.embed.Server` (documented as experimental), which
  runs its worker as a task on the running loop and sets no signal handlers.

The loop is made by `asyncio.Runner(loop_factory=...)` (Python 3.11+), so the
uvloop case needs no global policy change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol

import uvicorn
import uvloop
from bench.asgi_app import FLOOR_BODY_ENV, announce_loop, build_app

from genai_jobs.handlers import load_registry
from genai_jobs.runtime import opened_store
from genai_jobs.settings import Settings
from genai_jobs.worker import Maintenance, Worker

log = logging.getLogger("bench.inloop")


class _QuietUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling, as runtime.py's `_Server`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HTTPServer(Protocol):
    def serve(self) -> Awaitable[None]: ...

    def stop(self) -> None: ...


class UvicornInLoop:
    def __init__(self, app: Any, host: str, port: int, http: str) -> None:
        self._server = _QuietUvicorn(uvicorn.Config(
            app, host=host, port=port, http=http, lifespan="off", log_level="warning",
            proxy_headers=False, timeout_graceful_shutdown=5))

    async def serve(self) -> None:
        await self._server.serve()

    def stop(self) -> None:
        self._server.should_exit = True


class GranianInLoop:
    def __init__(self, app: Any, host: str, port: int) -> None:
        from granian.constants import Interfaces
        from granian.log import LogLevels
        from granian.server.embed import Server

        # ASGINL: no lifespan, the store is already open (as with uvicorn's lifespan="off").
        self._server = Server(app, address=host, port=port, interface=Interfaces.ASGINL,
                              log_level=LogLevels.warning)

    async def serve(self) -> None:
        await self._server.serve()

    def stop(self) -> None:
        self._server.stop()  # type: ignore[no-untyped-call]  # granian's stop() is unannotated


async def serve(server_kind: str, http: str, port: int) -> None:
    settings = Settings(port=port)
    registry = load_registry(settings.app)
    floor_body = json.loads(os.environ[FLOOR_BODY_ENV])
    async with opened_store(settings) as store:
        app = build_app(store, registry, settings, floor_body)
        server: HTTPServer
        if server_kind == "granian":
            server = GranianInLoop(app, settings.host, port)
        else:
            server = UvicornInLoop(app, settings.host, port, http)
        workers = [Worker(store, registry, settings, name=f"serve-{n}")
                   for n in range(settings.workers)]
        stop = asyncio.Event()
        _on_signals(stop.set)
        server_task = asyncio.create_task(server.serve())
        background = [asyncio.create_task(worker.run()) for worker in workers]
        background.append(asyncio.create_task(Maintenance(store, settings).run(stop)))
        announce_loop(f"in-loop {server_kind} with {len(workers)} worker(s)")
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({stopper, server_task}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if server_task.done():
            server_task.result()
            raise RuntimeError("the HTTP server stopped by itself")
        for worker in workers:
            worker.request_stop()
        stop.set()
        await asyncio.gather(*background)
        server.stop()
        await server_task


def _on_signals(callback: Callable[[], None]) -> None:
    def dispatch(sig: signal.Signals) -> None:
        log.warning("received %s: stopping", sig.name)
        callback()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, dispatch, sig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--http", choices=("auto", "httptools", "h11"), default="auto",
                        help="uvicorn's HTTP implementation (ignored for granian)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    factory = uvloop.new_event_loop if args.loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.server, args.http, args.port))


if __name__ == "__main__":
    main()
