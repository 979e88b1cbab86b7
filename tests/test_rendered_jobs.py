"""The documents a PostgreSQL API process keeps between big pages
(store/postgres/rendered.py): within their byte budget, and a page is only put
together when every row's document is known in the row's version."""

from __future__ import annotations

import orjson

from genai_jobs.domain import JobPageJson
from genai_jobs.store.postgres.rendered import RenderedJobs


def key(number: int, version: int = 1) -> str:
    return f"00000000-0000-0000-0000-{number:012d} {version} 1700000000000000"


def document(number: int, filler: int = 0) -> str:
    return orjson.dumps({"statusId": number, "pad": "x" * filler}).decode()


def test_rows_written_once_are_known_in_their_version_only() -> None:
    rendered = RenderedJobs()
    first = rendered.assemble([(3, key(n), document(n)) for n in range(3)])
    assert isinstance(first, JobPageJson)
    assert (first.count, first.total_count) == (3, 3)
    assert [item["statusId"] for item in orjson.loads(first.data)] == [0, 1, 2]
    again = rendered.assemble([(3, key(n), None) for n in range(3)])
    assert isinstance(again, JobPageJson)
    assert again.data == first.data
    # Job 1 changed: its new version is asked for, nothing is put together.
    changed = rendered.assemble([(3, key(0), None), (3, key(1, 2), None), (3, key(2), None)])
    assert changed == [key(1).partition(" ")[0]]


def test_an_empty_page_is_its_total_only() -> None:
    page = RenderedJobs().assemble([(7, None, None)])
    assert isinstance(page, JobPageJson)
    assert (page.data, page.count, page.total_count) == (b"[]", 0, 7)


def test_the_least_recently_listed_go_first_within_the_budget() -> None:
    size = len(document(0, 100).encode())
    rendered = RenderedJobs(max_bytes=3 * size, max_item_bytes=size)
    for number in range(3):
        rendered.assemble([(1, key(number), document(number, 100))])
    rendered.assemble([(1, key(0), None)])  # listed again: now the most recent
    rendered.assemble([(1, key(3), document(3, 100))])
    assert rendered.size_bytes <= 3 * size
    assert len(rendered) == 3
    assert rendered.assemble([(1, key(1), None)]) == [key(1).partition(" ")[0]]
    assert isinstance(rendered.assemble([(1, key(0), None)]), JobPageJson)
    # Too big to keep: in this page, written again next time.
    big = rendered.assemble([(1, key(9), document(9, 2 * size))])
    assert isinstance(big, JobPageJson)
    assert big.count == 1
    assert rendered.assemble([(1, key(9), None)]) == [key(9).partition(" ")[0]]
