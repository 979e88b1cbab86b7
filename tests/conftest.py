from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
