"""The documents a PostgreSQL API process keeps between big pages
(store/rendered.py): within their byte budget, and a page is only put
together when every row's document is known in the row's version."""

from __future__ import annotations

import orjson

from genai_jobs.domain import JobPageJson
from genai_jobs.store.rendered import RenderedJobs

Row = tuple[int | None, str | None, str | None, str | None]


def key(number: int, version: int = 1) -> str:
    return f"00000000-0000-0000-0000-{number:012d} {version} 1700000000000000"


def job_id(number: int) -> str:
    return key(number).partition(" ")[0]


def document(number: int, filler: int = 0) -> str:
    return orjson.dumps({"statusId": number, "pad": "x" * filler}).decode()


def rows(total: int, keys: list[str], written: dict[str, str] | None = None) -> list[Row]:
    """What the page statement returns: the keys' row, then one row per written document."""
    head: Row = (total, ",".join(keys) or None, None, None)
    return [head, *((None, None, k, item) for k, item in (written or {}).items())]


def test_rows_written_once_are_known_in_their_version_only() -> None:
    rendered = RenderedJobs()
    keys = [key(n) for n in range(3)]
    first = rendered.assemble(rows(3, keys, {k: document(n) for n, k in enumerate(keys)}))
    assert isinstance(first, JobPageJson)
    assert (first.count, first.total_count) == (3, 3)
    assert [item["statusId"] for item in orjson.loads(first.data)] == [0, 1, 2]
    again = rendered.assemble(rows(3, keys))
    assert isinstance(again, JobPageJson)
    assert again.data == first.data
    # Job 1 changed: its new version is asked for, nothing is put together.
    assert rendered.assemble(rows(3, [key(0), key(1, 2), key(2)])) == [job_id(1)]


def test_an_empty_page_is_its_total_only() -> None:
    page = RenderedJobs().assemble(rows(7, []))
    assert isinstance(page, JobPageJson)
    assert (page.data, page.count, page.total_count) == (b"[]", 0, 7)


def test_the_oldest_written_go_first_within_the_budget() -> None:
    size = len(document(0, 100).encode())
    rendered = RenderedJobs(max_bytes=3 * size, max_item_bytes=size)
    for number in range(4):
        rendered.assemble(rows(1, [key(number)], {key(number): document(number, 100)}))
    assert rendered.size_bytes <= 3 * size
    assert len(rendered) == 3
    assert rendered.assemble(rows(1, [key(0)])) == [job_id(0)]
    assert isinstance(rendered.assemble(rows(3, [key(1), key(2), key(3)])), JobPageJson)
    # Too big to keep: in this page, written again next time.
    big = rendered.assemble(rows(1, [key(9)], {key(9): document(9, 2 * size)}))
    assert isinstance(big, JobPageJson)
    assert big.count == 1
    assert rendered.assemble(rows(1, [key(9)])) == [job_id(9)]
