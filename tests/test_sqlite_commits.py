"""SQLite processes hear of each other's commits from the file system (inotify on Linux):
at once, and without looking while nothing happens."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from genai_jobs.store import Store, create_store
from genai_jobs.store.sqlite.commits import SAFETY_SECONDS, commit_signals
from tests.store_support import new_job

ROUNDS = 20


async def opened(path: Path) -> Store:
    store = create_store(f"sqlite:///{path}")
    await store.open()
    await store.migrate()
    return store


@pytest.fixture
async def two_instances(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one file, each with its own connections: as two processes."""
    here = await opened(tmp_path / "jobs.db")
    there = await opened(tmp_path / "jobs.db")
    try:
        yield here, there
    finally:
        await there.close()
        await here.close()


async def watching(path: Path) -> bool:
    async with commit_signals(path) as signals:
        return signals.watching


async def test_a_commit_elsewhere_wakes_a_waiter_long_before_the_safety_look(
        two_instances: tuple[Store, Store], tmp_path: Path) -> None:
    if not await watching(tmp_path / "jobs.db"):
        pytest.skip("no inotify here: the store polls every 10 ms instead")
    here, there = two_instances
    delays = []
    for _ in range(ROUNDS):
        job = (await here.submit(new_job())).job
        await asyncio.sleep(0.05)  # the watcher has seen this one; it waits for the next
        waiter = asyncio.create_task(here.changes.wait_for_job(job.id, 5.0))
        await asyncio.sleep(0)
        started = time.monotonic()
        await there.request_abort(job.id, None, "from the other process")
        assert await waiter, "not woken within 5 s"
        delays.append(time.monotonic() - started)
    assert statistics.median(delays) < 0.05
    assert max(delays) < SAFETY_SECONDS / 2, delays


async def test_an_idle_store_does_not_spend_cpu_looking(tmp_path: Path) -> None:
    if not await watching(tmp_path / "jobs.db"):
        pytest.skip("no inotify here: the store polls every 10 ms instead")
    store = await opened(tmp_path / "jobs.db")
    try:
        await asyncio.sleep(0.2)
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(2.0)
        share = (time.process_time() - cpu) / (time.monotonic() - wall)
    finally:
        await store.close()
    assert share < 0.01  # polling every 10 ms cost about 3 % of a core here
