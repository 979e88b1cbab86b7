"""Chunking arithmetic and text extraction, in-process (no model: tokens are given)."""

from __future__ import annotations

import itertools
import re

import pytest

from genai_jobs.vectors.chunking import Chunking, chunk_text, spans
from genai_jobs.vectors.extract import ExtractionFailed, extract, html_text
from genai_jobs.vectors.records import Document, DocumentKind
from tests.vectors_support import ANIMALS, MANUAL_PAGES, make_pdf


def words(text: str) -> list[tuple[int, int]]:
    """A stand-in tokenizer: one token per word."""
    return [match.span() for match in re.finditer(r"\S+", text)]


@pytest.mark.parametrize(("tokens", "size", "overlap", "expected"), [
    (0, 4, 1, 0), (1, 4, 1, 1), (4, 4, 1, 1), (5, 4, 1, 2), (7, 4, 1, 2), (8, 4, 1, 3),
    (10, 4, 0, 3), (100, 10, 5, 19),
])
def test_the_chunk_count_follows_size_and_overlap(tokens: int, size: int, overlap: int,
                                                  expected: int) -> None:
    chunking = Chunking(size, overlap)
    assert chunking.count(tokens) == expected
    assert len(list(spans([(n, n + 1) for n in range(tokens)], chunking))) == expected


def test_neighbouring_chunks_share_exactly_the_overlap() -> None:
    offsets = [(n, n + 1) for n in range(23)]
    found = list(spans(offsets, Chunking(6, 2)))
    assert [(span.first_token, span.end_token) for span in found] == [
        (0, 6), (4, 10), (8, 14), (12, 18), (16, 22), (20, 23)]
    for before, after in itertools.pairwise(found):
        assert before.end_token - after.first_token == 2


def test_a_chunk_is_the_document_s_own_text_between_its_first_and_last_token() -> None:
    text = "One  two\tthree\nfour five six seven"
    chunks = chunk_text(text, words, Chunking(3, 1))
    assert [chunk for _, chunk in chunks] == ["One  two\tthree", "three\nfour five",
                                              "five six seven"]
    assert [(span.start_char, span.end_char) for span, _ in chunks] == [(0, 14), (9, 24),
                                                                       (20, 34)]


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (4, 4), (4, -1)])
def test_impossible_chunking_is_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="chunking needs"):
        Chunking(size, overlap)


def test_html_text_keeps_what_a_reader_sees() -> None:
    text = html_text(ANIMALS)
    assert "Polar bears hunt seals" in text
    assert "emperor penguin breeds" in text
    assert "Jupiter" not in text
    assert "color" not in text
    assert html_text("<p>a &amp; b</p><p>c&nbsp;d</p>") == "a & b\nc d"


def test_a_pdf_s_pages_are_extracted_in_order_with_where_each_starts() -> None:
    extracted = extract(Document("m.pdf", DocumentKind.PDF, make_pdf(MANUAL_PAGES)))
    first, second = extracted.page_starts
    assert first == 0
    assert "reset button" in extracted.text[:second]
    assert "two years" in extracted.text[second:]
    assert extracted.page_at(0) == 1
    assert extracted.page_at(second) == 2
    assert extracted.page_at(len(extracted.text) - 1) == 2
    assert extracted.segments() == [(1, 0, second - 2), (2, second, len(extracted.text))]


def test_a_corrupt_pdf_fails_extraction_with_a_reason() -> None:
    broken = make_pdf(MANUAL_PAGES)[:300]
    with pytest.raises(ExtractionFailed, match="corrupt PDF"):
        extract(Document("broken.pdf", DocumentKind.PDF, broken))


def test_text_and_markdown_are_taken_as_they_are() -> None:
    document = Document("a.md", DocumentKind.MARKDOWN, "\ufeff# Title\n\nbody".encode())
    assert extract(document).text == "# Title\n\nbody"
    assert extract(document).page_at(3) is None
