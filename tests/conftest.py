from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from genai_jobs.store import Store
from tests.pg_support import require_postgres
from tests.store_support import STORE_KINDS, StoreTarget, dispose_target, store_target
from tests.support import Server, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `genai-jobs serve` (2 in-process workers) shared by the tests that only read
    and submit; tests that kill or stop processes start their own."""
    running = start_server(tmp_path_factory.mktemp("server"), "--workers", "2")
    try:
        yield running
    finally:
        running.service.terminate()
        running.service.close()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own, for tests that stop or kill processes."""
    running = start_server(tmp_path, "--workers", "1")
    try:
        yield running
    finally:
        running.service.close()


# -- stores (the store contract tests: every test once per store kind) ---------


@pytest.fixture(params=STORE_KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreTarget]:
    """Where this test's store lives (one per store kind; PostgreSQL: a new database)."""
    if request.param == "postgres":
        require_postgres()
    made = store_target(request.param, tmp_path)
    try:
        yield made
    finally:
        dispose_target(made)


@pytest.fixture
async def store(target: StoreTarget) -> AsyncIterator[Store]:
    """An open, migrated, empty store."""
    opened = await target.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def other_instance(store: Store, target: StoreTarget) -> AsyncIterator[Store]:
    """A second instance on the same store, as another process would open it."""
    second = await target.open(migrate=False)
    try:
        yield second
    finally:
        await second.close()
