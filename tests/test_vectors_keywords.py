"""The keyword side of search, without a server: a question's terms as each engine gets
them, and reciprocal rank fusion."""

from __future__ import annotations

import pytest

from genai_jobs.vectors.keywords import MAX_TERMS, RRF_K, fts5_query, fuse, terms, websearch_query


@pytest.mark.parametrize(("question", "expected"), [
    ("What does error E-4172 mean?", ["error", "e-4172", "mean"]),
    ("Which bracket fits PN-55012-B, and is v3.14.2 out?", ["bracket", "fits", "pn-55012-b",
                                                             "v3.14.2", "out"]),
    ("path /var/log/app_x.log", ["path", "var/log/app_x.log"]),
    ("The the THE", []),
    ("Hoćemo li ići? café", ["hoćemo", "li", "ići", "café"]),
    ("", []),
])
def test_terms_keep_codes_whole_and_leave_out_stop_words(question: str,
                                                         expected: list[str]) -> None:
    assert terms(question) == expected


def test_a_long_question_is_cut_to_max_terms() -> None:
    assert len(terms(" ".join(f"word{n}" for n in range(500)))) == MAX_TERMS


def test_each_engine_gets_every_term_quoted_and_ored() -> None:
    assert fts5_query('error "E-4172"') == '"error" OR "e-4172"'
    assert websearch_query('error "E-4172"') == '"error" or "e-4172"'
    assert fts5_query("what is it?") is None
    assert websearch_query("?!") is None


def test_fusion_ranks_by_summed_reciprocal_ranks() -> None:
    fused = fuse([[1, 2, 3], [3, 4]], k=10)
    assert [item for item, _ in fused] == [3, 1, 2, 4]
    assert fused[0][1] == pytest.approx(1 / (RRF_K + 3) + 1 / (RRF_K + 1))
    assert fuse([[1, 2, 3], []], k=2) == [(1, 1 / (RRF_K + 1)), (2, 1 / (RRF_K + 2))]
    assert fuse([[], []], k=3) == []
    # Equal fused scores keep the first ranking's order.
    assert [item for item, _ in fuse([[7, 8], [8, 7]], k=2)] == [7, 8]
