"""A SQLite process's writes that wait for the file's write lock share one commit.

Another process holds the lock for a commit at a time; meanwhile this process's
requests pile up (a worker's next claim beside its last job's outcome), and all
of them are committed together once the lock is free (connection.py
`_commit_batch`): one fsync for all, instead of one each.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from genai_jobs.store.sqlite.connection import SQLiteDatabase, WriteTx
from genai_jobs.store.sqlite.store import SQLiteStore
from tests.store_support import store_target

WAIT_SECONDS = 10


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await store_target("sqlite", tmp_path).open()
    assert isinstance(opened, SQLiteStore)
    try:
        yield opened
    finally:
        await opened.close()


def change_number(tx: WriteTx) -> int:
    return tx.seq


async def test_writes_queued_while_another_process_holds_the_lock_share_a_commit(
        store: SQLiteStore) -> None:
    database: SQLiteDatabase = store._db  # the store's writer, as every store write uses it
    other_process = sqlite3.connect(database.path, isolation_level=None)
    try:
        other_process.execute("BEGIN IMMEDIATE")  # holds the file's write lock
        first = asyncio.ensure_future(database.write(change_number))
        await asyncio.sleep(0.1)  # the writer thread now waits for the lock with `first`
        later = [asyncio.ensure_future(database.write(change_number)) for _ in range(3)]
        await asyncio.sleep(0.1)
        other_process.execute("COMMIT")
        results = await asyncio.wait_for(asyncio.gather(first, *later), WAIT_SECONDS)
    finally:
        other_process.close()

    numbers = [seq for seq, _ in results]
    assert len(set(numbers)) == 1, numbers  # one commit, one change number
    alone, _ = await database.write(change_number)
    assert alone == numbers[0] + 1
