"""The keyword side of search, without a server: a question's terms as each engine gets
them, and reciprocal rank fusion."""

from __future__ import annotations

import pytest

from genai_jobs.vectors.keywords import (
    MAX_TERMS,
    RRF_K,
    fts5_query,
    fuse,
    keyword_weight,
    terms,
    websearch_query,
)


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


def test_each_engine_gets_the_codes_of_a_question_or_else_all_its_terms_quoted_and_ored(
) -> None:
    assert fts5_query('error "E-4172" or E-4173') == '"e-4172" OR "e-4173"'
    assert websearch_query('error "E-4172"') == '"e-4172"'
    assert fts5_query('pump "pressure" fault') == '"pump" OR "pressure" OR "fault"'
    assert websearch_query("pump pressure") == '"pump" or "pressure"'
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


@pytest.mark.parametrize(("question", "weight"), [
    ("What does error E-4172 mean?", 2.0),
    ("Is v3.14.2 out?", 2.0),
    ("Which router fits bracket 55012?", 2.0),
    ("Where do the logs of app_server go?", 2.0),
    ("Can I keep holidays I did not take?", 0.0),
    ("Who approved Dana's request?", 0.0),
])
def test_hybrid_weighs_keywords_by_whether_the_question_holds_a_code(question: str,
                                                                      weight: float) -> None:
    assert keyword_weight(question) == weight


def test_weighted_fusion_scales_each_ranking_and_a_zero_weight_drops_it() -> None:
    assert [item for item, _ in fuse([[1, 2], [2, 3]], k=3, weights=[1.0, 0.0])] == [1, 2]
    fused = fuse([[1, 2], [2, 1]], k=2, weights=[1.0, 2.0])
    assert [item for item, _ in fused] == [2, 1]
    assert fused[0][1] == pytest.approx(1 / (RRF_K + 2) + 2 / (RRF_K + 1))
