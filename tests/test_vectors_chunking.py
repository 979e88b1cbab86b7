"""Chunking arithmetic and text extraction, in-process (no model: tokens are given)."""

from __future__ import annotations

import itertools
import random
import re
from typing import Any

import pytest

from genai_jobs.vectors.chunking import Chunking, Span, TokenOffsets, chunk_text, spans
from genai_jobs.vectors.extract import ExtractionFailed, extract, html_text
from genai_jobs.vectors.records import Document, DocumentKind
from tests.vectors_support import ANIMALS, MANUAL_PAGES, make_pdf


def words(text: str) -> list[tuple[int, int]]:
    """A stand-in tokenizer: one token per word."""
    return [match.span() for match in re.finditer(r"\S+", text)]


def marks(text: str) -> list[tuple[int, int]]:
    """A stand-in tokenizer with punctuation as tokens of its own."""
    return [match.span() for match in re.finditer(r"\w+|[^\w\s]", text)]


def threes(text: str) -> list[tuple[int, int]]:
    """A stand-in tokenizer whose tokens take in whitespace and run across separators."""
    return [match.span() for match in re.finditer(r".{1,3}", text, re.DOTALL)]


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


PARAGRAPHS = ("\n\n", "\n", " ")
SAMPLE = ("Chunking keeps paragraphs whole.\n\n"
          "A long paragraph is cut at its lines.\nThe second line follows.\n\n"
          "Short one.")


def texts_of(text: str, chunking: Chunking, tokenizer: TokenOffsets = words) -> list[str]:
    return [chunk for _, chunk in chunk_text(text, tokenizer, chunking)]


def test_recursive_chunking_cuts_at_paragraphs_before_lines_before_words() -> None:
    assert texts_of(SAMPLE, Chunking(12, 0, PARAGRAPHS)) == [
        "Chunking keeps paragraphs whole.",
        "A long paragraph is cut at its lines.\nThe second line follows.",
        "Short one."]
    assert texts_of(SAMPLE, Chunking(8, 0, PARAGRAPHS)) == [
        "Chunking keeps paragraphs whole.",
        "A long paragraph is cut at its lines.",
        "The second line follows.\n\nShort one."]


def test_recursive_chunks_of_a_small_example_are_exactly_these() -> None:
    chunks = chunk_text(SAMPLE, words, Chunking(6, 2, PARAGRAPHS))
    assert [chunk for _, chunk in chunks] == [
        "Chunking keeps paragraphs whole.\n\nA long",
        "A long paragraph is cut at",
        "cut at its lines.",
        "its lines.\nThe second line follows.",
        "Short one."]
    assert chunks[1][0] == Span(1, 4, 10, 34, 60)
    assert [(span.index, span.first_token, span.end_token) for span, _ in chunks] == [
        (0, 0, 6), (1, 4, 10), (2, 8, 12), (3, 10, 16), (4, 16, 18)]


def test_the_overlap_is_the_whole_trailing_pieces_that_fit_in_it() -> None:
    lines = "a b\nc d\ne f\ng h"
    assert texts_of(lines, Chunking(4, 2, ("\n",))) == ["a b\nc d", "c d\ne f", "e f\ng h"]
    # The last line alone is over the overlap: nothing is carried, rather than half a line.
    assert texts_of(lines, Chunking(4, 1, ("\n",))) == ["a b\nc d", "e f\ng h"]
    # Only as much is carried as leaves room for the piece that opens the chunk.
    assert texts_of("a\nb\nc d e", Chunking(4, 2, ("\n",))) == ["a\nb", "b\nc d e"]


def test_a_separator_stays_with_the_piece_before_it() -> None:
    text = "One two. Three four. Five."
    assert texts_of(text, Chunking(3, 0, (". ",)), marks) == ["One two.", "Three four.",
                                                               "Five."]


def test_text_without_its_separators_falls_back_to_token_windows() -> None:
    text = " ".join(f"w{n}" for n in range(23))
    windows = chunk_text(text, words, Chunking(6, 2))
    assert [(span.first_token, span.end_token) for span, _ in windows] == [
        (0, 6), (4, 10), (8, 14), (12, 18), (16, 22), (20, 23)]
    assert chunk_text(text, words, Chunking(6, 2, ("\n\n", "\n"))) == windows
    assert chunk_text(text, words, Chunking(6, 2, ("",))) == windows


@pytest.mark.parametrize("text", ["", " \n\n \n"])
@pytest.mark.parametrize("separators", [(), PARAGRAPHS])
def test_a_text_without_tokens_has_no_chunks(text: str, separators: tuple[str, ...]) -> None:
    assert chunk_text(text, words, Chunking(4, 1, separators)) == []


@pytest.mark.parametrize("separators", [("\n", 3), "\n", ["\n"]])
def test_separators_that_are_not_strings_are_refused(separators: Any) -> None:
    with pytest.raises(TypeError, match="separators must be a tuple of strings"):
        Chunking(4, 1, separators)


def test_token_windows_of_a_recursive_chunking_are_refused() -> None:
    with pytest.raises(ValueError, match="needs the text"):
        list(spans([(0, 1)], Chunking(4, 1, PARAGRAPHS)))


def assert_sound(text: str, tokenizer: TokenOffsets, chunking: Chunking,
                 chunks: list[tuple[Span, str]]) -> None:
    """Chunks in order, each of 1 to `size` tokens and the text between them, covering all."""
    offsets = tokenizer(text)
    assert [span.index for span, _ in chunks] == list(range(len(chunks)))
    assert (chunks[0][0].first_token, chunks[-1][0].end_token) == (0, len(offsets))
    for span, chunk in chunks:
        assert 1 <= span.end_token - span.first_token <= chunking.size
        assert (span.start_char, span.end_char) == (offsets[span.first_token][0],
                                                    offsets[span.end_token - 1][1])
        assert chunk == text[span.start_char:span.end_char]
    for (before, _), (after, _) in itertools.pairwise(chunks):
        assert before.first_token < after.first_token
        assert 0 <= before.end_token - after.first_token <= chunking.overlap


def random_text(rng: random.Random) -> str:
    parts = ["alpha", "be", "c", "delta.", "e,", "\n", "\n\n", " ", "  ", ". "]
    return "".join(rng.choice(parts) for _ in range(rng.randrange(80)))


def test_recursive_chunks_are_sound_for_any_text_size_and_overlap() -> None:
    rng = random.Random(20240611)
    for _ in range(600):
        text, tokenizer = random_text(rng), rng.choice([words, marks, threes])
        size = rng.randint(1, 12)
        separators = tuple(rng.sample(["\n\n", "\n", ". ", " ", ""], rng.randint(1, 5)))
        chunking = Chunking(size, rng.randrange(size), separators)
        chunks = chunk_text(text, tokenizer, chunking)
        tokens = len(tokenizer(text))
        if tokens == 0:
            assert chunks == []
            continue
        assert_sound(text, tokenizer, chunking, chunks)
        if tokens <= size:  # kept whole, whatever separators it holds
            assert len(chunks) == 1
        if not any(separator and separator in text for separator in separators):
            assert chunks == chunk_text(text, tokenizer, Chunking(size, chunking.overlap))


@pytest.mark.timeout(30)  # a scan per chunk or per piece would take minutes here
def test_a_million_character_document_is_chunked_in_one_pass() -> None:
    line = "the quick brown fox jumps over the lazy dog " * 4  # 36 tokens
    paragraph = (line.rstrip() + "\n") * 5  # 180 tokens: two make too many for a chunk
    body = (paragraph + "\n") * 920
    text = body + "word " * 40_000  # a 40,000-word line: cut at its spaces
    assert len(text) > 1_000_000
    chunking = Chunking(256, 40, PARAGRAPHS)
    chunks = chunk_text(text, words, chunking)
    assert_sound(text, words, chunking, chunks)
    assert [chunk for _, chunk in chunks[:919]] == [paragraph.strip()] * 919
    # The last paragraph's chunk is filled up with words; then windows of words.
    tail = [span for span, _ in chunks[919:]]
    assert [span.end_token - span.first_token for span in tail[:-1]] == [256] * (len(tail) - 1)
    assert all(before.end_token - after.first_token == 40
               for before, after in itertools.pairwise(tail))


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
