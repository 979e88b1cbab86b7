"""Processes: `serve` (API + workers) and `worker` (workers only), with their signals.

SIGTERM or SIGINT: stop claiming, let running jobs finish for the grace
period, release what is still running for other workers, then exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Generator

import uvicorn
from prometheus_client import start_http_server

from genai_jobs import metrics
from genai_jobs.api import create_asgi_app
from genai_jobs.api.connections import (
    ConnectionLimits,
    connection_cap,
    guarded_protocol,
    raise_file_limit,
)
from genai_jobs.handlers import Registry
from genai_jobs.settings import Settings
from genai_jobs.store import Store, create_store, public_location, redact_url
from genai_jobs.tokens import hash_secret, new_secret
from genai_jobs.vectors.embeddings import preload_if_configured
from genai_jobs.worker import Maintenance, Worker

log = logging.getLogger("genai_jobs")

Announce = Callable[[str], None]

# Connections the kernel queues before the server accepts them (uvicorn's default).
LISTEN_BACKLOG = 2048


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process stops in its own order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


# How long a thread may hold the GIL while others wait for it (Python's default is 5 ms).
# The event loop waits for it after every system call while threads build big pages or
# run handlers: shorter turns keep status polls from queueing behind them.
GIL_SWITCH_SECONDS = 0.001


def tune_for_latency() -> None:
    """Shorten the GIL's turns, and keep the objects made at start (modules, the app)
    out of every later garbage collection, whose full passes stop every thread: with
    8 clients looping on 1,000-job pages, a status poll's p99 went from 69-78 ms to
    28-38 ms (p50 9-11 -> 7-9 ms)."""
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    gc.collect()
    gc.freeze()


def store_for(settings: Settings) -> Store:
    return create_store(settings.database_url, pool_size=settings.database_pool_size,
                        statement_timeout_seconds=settings.database_statement_timeout_seconds)


class NotAStore(Exception):
    """The database names no genai-jobs store, and the caller wanted an existing one."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@contextlib.asynccontextmanager
async def opened_store(settings: Settings, *, only_existing: bool = False
                       ) -> AsyncIterator[Store]:
    """The store, migrated; with `only_existing`, NotAStore for a database no migration
    ever touched (a token made there is one no server would accept)."""
    store = store_for(settings)
    await store.open()
    try:
        if only_existing and await store.is_empty():
            raise NotAStore(public_location(settings.database_url))
        applied = await store.migrate()
        if applied:
            log.info("applied migrations %s", applied)
        yield store
    finally:
        await store.close()


async def ensure_admin_token(store: Store, announce: Announce) -> None:
    """On a store with no token at all, make an admin token and show it once."""
    if await store.count_tokens() > 0:
        return
    secret = new_secret()
    token = await store.create_token("admin", True, hash_secret(secret))
    announce(f"Created admin token {token.id} (tenant 'admin'); it is shown only once:")
    announce(secret)


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The settings' time-outs, and a connection cap below the open-file limit, which is
    raised to its hard limit first: one socket per client is the server's main cost."""
    return ConnectionLimits(
        header_seconds=settings.http_header_timeout_seconds,
        body_idle_seconds=settings.http_body_idle_timeout_seconds,
        write_stall_seconds=settings.http_write_stall_timeout_seconds,
        max_connections=connection_cap(settings.http_max_connections, raise_file_limit()))


class PortInUse(Exception):
    pass


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts, so that a taken
    port is one clear error rather than a server that dies after starting.

    Made as asyncio would make it (protocol TCP from getaddrinfo): asyncio turns
    Nagle's algorithm off only on TCP-protocol sockets, and with it on, a response
    written in two parts waits for a delayed ACK, some 40 ms on every request.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP,
            flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


async def serve(settings: Settings, registry: Registry, announce: Announce) -> None:
    listener = bind(settings.host, settings.port)
    async with opened_store(settings) as store:
        await ensure_admin_token(store, announce)
        # In a thread while the process starts answering, when asked: the first build or
        # search then finds the embedding model loaded instead of waiting 20-60 s for it.
        preload_if_configured()
        server = _Server(uvicorn.Config(create_asgi_app(store, registry, settings),
                                        lifespan="off", log_level="warning",
                                        # httptools (measured: docs/explanation/
                                        # asgi-server.md) with the time-outs it lacks.
                                        http=guarded_protocol(connection_limits(settings)),
                                        # Forwarded headers are read by api/urls.py, and
                                        # only when the behind_proxy setting says so.
                                        proxy_headers=False,
                                        timeout_keep_alive=settings.http_keep_alive_seconds,
                                        timeout_graceful_shutdown=5))
        workers = [Worker(store, registry, settings, name=f"serve-{n}")
                   for n in range(settings.workers)]
        stop = asyncio.Event()
        _on_signals(stop.set)
        tune_for_latency()
        server_task = asyncio.create_task(server.serve(sockets=[listener]))
        background = [asyncio.create_task(worker.run()) for worker in workers]
        background.append(asyncio.create_task(Maintenance(store, settings).run(stop)))
        port = listener.getsockname()[1]  # the one bound, when --port 0 asked for any
        announce(f"genai-jobs serving on http://{settings.host}:{port} "
                 f"with {len(workers)} worker(s) on {redact_url(settings.database_url)}")
        await _until(stop, server_task)
        # Workers drain first, while the API still answers; then the API stops.
        for worker in workers:
            worker.request_stop()
        stop.set()
        await asyncio.gather(*background)
        server.should_exit = True
        await server_task
    _exit_if_threads_abandoned(workers)


async def work(settings: Settings, registry: Registry, announce: Announce) -> None:
    if settings.metrics_port is not None:
        try:
            start_http_server(settings.metrics_port, addr=settings.host,
                              registry=metrics.REGISTRY)
        except OSError as exc:
            raise PortInUse(f"cannot serve metrics on {settings.host}:{settings.metrics_port}:"
                            f" {exc.strerror}") from exc
    async with opened_store(settings) as store:
        preload_if_configured()  # as in `serve`
        worker = Worker(store, registry, settings, name="worker")
        stop = asyncio.Event()
        _on_signals(worker.request_stop, stop.set)
        maintenance = asyncio.create_task(Maintenance(store, settings).run(stop))
        announce(f"genai-jobs worker {worker.owner} on {redact_url(settings.database_url)}")
        await worker.run()
        stop.set()
        await maintenance
    _exit_if_threads_abandoned([worker])


def _exit_if_threads_abandoned(workers: list[Worker]) -> None:
    """A sync handler that ignored the request to stop still runs in a thread, and
    Python would wait for it at exit. Its lease is lapsing and its job will be
    retried elsewhere, so the thread must not outlive the process: leave now."""
    if any(worker.abandoned_threads for worker in workers):
        log.warning("exiting with handler threads that did not stop")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


async def migrate(settings: Settings) -> list[int]:
    store = store_for(settings)
    await store.open()
    try:
        return await store.migrate()
    finally:
        await store.close()


async def _until(stop: asyncio.Event, server_task: asyncio.Task[None]) -> None:
    """Wait for a stop signal, or for the HTTP server to end by itself (it should not)."""
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({stopper, server_task}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if server_task.done():
        server_task.result()  # its error, if it failed
        raise RuntimeError("the HTTP server stopped unexpectedly")


def _on_signals(*callbacks: Callable[[], None]) -> None:
    def dispatch(sig: signal.Signals) -> None:
        log.info("received %s: stopping", sig.name)
        for callback in callbacks:
            callback()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, dispatch, sig)
