"""Helpers for the store contract tests: which stores to test, jobs to submit,
bounded waits, and processes that race on one store.

Nothing here imports pytest: the race actors run in `spawn`ed child processes
that import this module and nothing of the test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from genai_jobs.domain import Job, Lease, NewJob
from genai_jobs.store import Store
from genai_jobs.store.postgres import PostgresStore
from genai_jobs.store.sqlite import SQLiteStore
from tests.pg_support import create_database, drop_database

T = TypeVar("T")

# The stores the contract suite runs against. A PostgreSQL store joins with
# one more name here and one more branch in `StoreTarget.create`.
STORE_KINDS = ("sqlite", "postgres")

# Bounds for waits on other processes: generous, since a failure waits them out.
ACTOR_START_SECONDS = 60.0
ACTOR_REPLY_SECONDS = 60.0
BARRIER_SECONDS = 30.0
ACTOR_IDLE_SECONDS = 120.0
# A claimer gives up after this many claims (it normally stops at the first empty one).
MAX_CLAIMS_PER_DRAIN = 10_000


# -- stores --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """Where a store lives; picklable, so a child process can open its own instance."""

    kind: str
    location: str  # a file for SQLite (a URL for PostgreSQL)

    def create(self) -> Store:
        if self.kind == "sqlite":
            return SQLiteStore(Path(self.location))
        if self.kind == "postgres":
            return PostgresStore(self.location, pool_size=4)
        raise ValueError(f"unknown store kind {self.kind!r}")

    async def open(self, *, migrate: bool = True) -> Store:
        store = self.create()
        await store.open()
        if migrate:
            try:
                await store.migrate()
            except BaseException:
                await store.close()
                raise
        return store


def store_target(kind: str, directory: Path, name: str = "jobs") -> StoreTarget:
    """A new, empty store of `kind` named `name` inside a test's own directory."""
    if kind == "sqlite":
        return StoreTarget(kind, str(directory / f"{name}.db"))
    if kind == "postgres":
        return StoreTarget(kind, create_database())
    raise ValueError(f"unknown store kind {kind!r}")


def dispose_target(target: StoreTarget) -> None:
    """Remove what `store_target` made outside the test's directory."""
    if target.kind == "postgres":
        drop_database(target.location)


# -- jobs ----------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job(
    tenant: str = "acme",
    job_type: str = "echo",
    *,
    payload: dict[str, Any] | None = None,
    description: str = "",
    priority: int = 0,
    max_attempts: int = 3,
    expires_in: float = 3600.0,
    expires_at: datetime | None = None,
    key: str | None = None,
    request_hash: str | None = None,
) -> NewJob:
    return NewJob(
        tenant=tenant,
        job_type=job_type,
        payload={"n": 1} if payload is None else payload,
        description=description,
        expires_at=expires_at or utcnow() + timedelta(seconds=expires_in),
        max_attempts=max_attempts,
        priority=priority,
        idempotency_key=key,
        request_hash=request_hash,
    )


async def submit(store: Store, **fields: Any) -> Job:
    return (await store.submit(new_job(**fields))).job


async def claim_one(
    store: Store, job_type: str = "echo", lease_seconds: float = 60.0, owner: str = "worker-1"
) -> Lease:
    leases = await store.claim(owner, {job_type}, lease_seconds, 1)
    assert len(leases) == 1, f"expected to claim one {job_type} job, got {leases}"
    return leases[0]


# -- bounded waits -------------------------------------------------------------


async def wait_until(
    check: Callable[[], Awaitable[T | None]] | Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.01,
) -> T:
    """Call `check` (sync or async) until it returns something truthy, at most `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last  # type: ignore[no-any-return]
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


async def sleep_past(moment: datetime, timeout: float = 10.0) -> None:
    """Return once the wall clock (which the stores use) is past `moment`."""
    await wait_until(lambda: utcnow() > moment, timeout, f"the clock to pass {moment}")


# -- racing processes ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one store call in a child process did: its return value or its error."""

    value: Any = None
    error_type: str | None = None
    error_message: str = ""

    @property
    def ok(self) -> bool:
        return self.error_type is None


@dataclass(frozen=True, slots=True)
class Order:
    """One store call for an actor: `op` with `args`, `delay` s after the barrier."""

    op: str
    args: tuple[Any, ...] = ()
    delay: float = 0.0


async def _drain(store: Store, owner: str, job_type: str, seed: int) -> list[tuple[UUID, UUID]]:
    """Claim (1 to 3 at a time) and complete jobs until none is left; what was taken."""
    rng = random.Random(seed)
    taken: list[tuple[UUID, UUID]] = []
    for _ in range(MAX_CLAIMS_PER_DRAIN):
        leases = await store.claim(owner, {job_type}, 60.0, rng.randint(1, 3))
        if not leases:
            return taken
        for lease in leases:
            taken.append((lease.job_id, lease.lease_id))
            await store.complete(lease, {"by": owner}, None)
    raise RuntimeError(f"{owner} still found work after {MAX_CLAIMS_PER_DRAIN} claims")


async def _perform(store: Store, name: str, order: Order) -> Any:
    if order.op == "complete":
        return await store.complete(*order.args)
    if order.op == "abort":
        return await store.request_abort(*order.args)
    if order.op == "expire":
        return await store.expire_overdue(*order.args)
    if order.op == "drain":
        return await _drain(store, name, *order.args)
    raise ValueError(f"unknown op {order.op!r}")


async def _act(target: StoreTarget, name: str, inbox: Any, outbox: Any, barrier: Any) -> None:
    store = target.create()
    await store.open()
    try:
        outbox.put((name, Outcome("ready")))
        while True:
            order: Order | None = inbox.get(timeout=ACTOR_IDLE_SECONDS)
            if order is None:
                return
            barrier.wait(timeout=BARRIER_SECONDS)
            if order.delay:
                await asyncio.sleep(order.delay)
            try:
                outcome = Outcome(await _perform(store, name, order))
            except Exception as exc:
                outcome = Outcome(None, type(exc).__name__, str(exc))
            outbox.put((name, outcome))
    finally:
        await store.close()


def actor_main(target: StoreTarget, name: str, inbox: Any, outbox: Any, barrier: Any) -> None:
    """Entry point of a child process: its own store instance and event loop."""
    asyncio.run(_act(target, name, inbox, outbox, barrier))


@dataclass
class ActorPool:
    """Child processes (spawned: no state inherited) that each hold their own
    store instance and run one store call per round, released together by a barrier."""

    target: StoreTarget
    names: Sequence[str]
    _inboxes: dict[str, Any] = field(default_factory=dict)
    _outbox: Any = None
    _processes: list[Any] = field(default_factory=list)

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(len(self.names))
        self._outbox = ctx.Queue()
        for name in self.names:
            self._inboxes[name] = ctx.Queue()
            process = ctx.Process(
                target=actor_main, name=f"store-actor-{name}", daemon=True,
                args=(self.target, name, self._inboxes[name], self._outbox, barrier),
            )
            process.start()
            self._processes.append(process)
        self._collect(ACTOR_START_SECONDS)

    def run_round(self, orders: dict[str, Order]) -> dict[str, Outcome]:
        """Give every actor its order; they all start it at once. Blocking."""
        assert set(orders) == set(self.names)
        for name, order in orders.items():
            self._inboxes[name].put(order)
        return self._collect(ACTOR_REPLY_SECONDS)

    def _collect(self, timeout: float) -> dict[str, Outcome]:
        deadline = time.monotonic() + timeout
        replies: dict[str, Outcome] = {}
        while len(replies) < len(self.names):
            try:
                name, outcome = self._outbox.get(timeout=0.5)
            except queue.Empty:
                dead = [p.name for p in self._processes if not p.is_alive()]
                if dead or time.monotonic() > deadline:
                    raise AssertionError(
                        f"actors did not all reply within {timeout} s; replies from "
                        f"{sorted(replies)}, dead: {dead}"
                    ) from None
                continue
            replies[name] = outcome
        return replies

    def stop(self) -> None:
        for inbox in self._inboxes.values():
            with contextlib.suppress(ValueError, OSError):
                inbox.put(None)
        for process in self._processes:
            process.join(timeout=15)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        for channel in [*self._inboxes.values(), self._outbox]:
            if channel is not None:
                channel.close()
                channel.join_thread()


@contextlib.contextmanager
def actor_pool(target: StoreTarget, names: Sequence[str]) -> Iterator[ActorPool]:
    pool = ActorPool(target, names)
    try:
        pool.start()
        yield pool
    finally:
        pool.stop()
