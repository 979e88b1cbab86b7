"""Keyword search beside the dense one: a query's terms for each store's full-text engine,
and reciprocal rank fusion of the two rankings.

A question is cut into terms: runs of letters and digits, joined by `-`, `_`, `.`
or `/` inside a term, so that `E-4172`, `PN-55012-B` and `v3.14.2` stay one term
(each engine then reads a term as the phrase of its own tokens). The terms are
OR-ed: BM25 (SQLite FTS5) and `ts_rank_cd` (PostgreSQL) weigh rare terms above
common ones, so the exact token that an embedding blurs decides the ranking
when the question has one, and a paraphrase still finds chunks that share a
few words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Terms of a question beyond these are left out (a question is short; a pasted page
# would otherwise make a query of thousands of terms).
MAX_TERMS = 64
# Reciprocal rank fusion's constant (Cormack, Clarke and Büttcher, 2009): a hit at rank
# r of a ranking adds 1 / (RRF_K + r).
RRF_K = 60
_TERM = re.compile(r"\w+(?:[-_./]\w+)*", re.UNICODE)
_CODE_LIKE = re.compile(r"\d|\w[-_./]\w")
# The keyword ranking's weight in hybrid search for a question with a code-like term.
CODE_WEIGHT = 2.0
# Words of a question that say nothing of what it is about: left out of the query
# (they would only make the engine rank most chunks). PostgreSQL's `english`
# configuration drops its own; FTS5 has no such list.
STOP_WORDS = frozenset({
    "a", "about", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could",
    "did", "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into",
    "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "should", "so", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was", "we",
    "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "would",
    "you", "your",
})


def terms(question: str) -> list[str]:
    """The question's distinct terms, in order, lower case, stop words left out."""
    found: list[str] = []
    for match in _TERM.finditer(question.lower()):
        term = match.group(0)
        if term not in found and term not in STOP_WORDS:
            found.append(term)
        if len(found) == MAX_TERMS:
            break
    return found


def query_terms(question: str) -> list[str]:
    """The terms a keyword search asks for: the code-like ones when the question has
    any, else all. A code is rare, and ranks its chunks first anyway; the question's
    other words would make the engine rank every chunk that has one of them (at
    100,000 chunks, ~100 ms of FTS5 for a question sharing two words with every chunk,
    instead of ~1 ms)."""
    found = terms(question)
    codes = [term for term in found if _CODE_LIKE.search(term)]
    return codes or found


def fts5_query(question: str) -> str | None:
    """An FTS5 MATCH expression: every term a quoted string, OR-ed (None: no terms)."""
    found = query_terms(question)
    if not found:
        return None
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in found)


def websearch_query(question: str) -> str | None:
    """PostgreSQL `websearch_to_tsquery` text: every term quoted (a phrase of its
    lexemes), OR-ed (None: no terms)."""
    found = query_terms(question)
    if not found:
        return None
    return " or ".join('"' + term.replace('"', " ") + '"' for term in found)


def keyword_weight(question: str) -> float:
    """How much the keyword ranking counts beside the dense one in hybrid search: fully
    (CODE_WEIGHT) when the question holds a term an embedding blurs (one with a digit,
    or letters joined by `-`, `_`, `.` or `/`: an error code, a part number, a version),
    not at all otherwise. Measured in bench/retrieval.py: fused evenly, the keyword
    ranking's noise pushed paraphrases' answers out of the dense top 10 (recall@10 0.91
    to 0.67); weighed by the question, hybrid beats both single modes overall."""
    return CODE_WEIGHT if any(_CODE_LIKE.search(term) for term in terms(question)) else 0.0


def fuse(rankings: Sequence[Sequence[int]], k: int,
         weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion: the `k` items best over all rankings (best first,
    each a list of item ids), with their fused scores; ties keep the first ranking's
    order. A ranking of weight 0 adds nothing."""
    scores: dict[int, float] = {}
    first_seen: dict[int, tuple[int, int]] = {}
    for which, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[which]
        if weight == 0:
            continue
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + weight / (RRF_K + rank)
            first_seen.setdefault(item, (which, rank))
    ordered = sorted(scores, key=lambda item: (-scores[item], first_seen[item]))
    return [(item, scores[item]) for item in ordered[:k]]
