"""Validate the retrieval benchmark data in this folder (corpus.jsonl, questions.jsonl).

    .venv/bin/python bench/retrieval/check.py            # the files beside this script
    .venv/bin/python bench/retrieval/check.py --dir DIR  # another copy

Checks: ids unique and well formed, passages of 40-120 words, every question has at least one
answer and every answer id exists, kinds are "exact" or "paraphrase". For each exact question,
at least one rare token of the question (regex RARE below, 3+ characters) appears verbatim in an
answer passage and in no more than MAX_DF passages of the corpus; how many of them have a
near-duplicate token (edit distance <= 2) in a passage that is not an answer is reported and must
be at least half. For paraphrase questions, the word overlap with the best answer (Jaccard over
lowercase words without stopwords) is reported and must average below MAX_MEAN_JACCARD.

Prints a summary; exits 1 on any violation. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

RARE = re.compile(r"[A-Za-z]*[-_]?[0-9][A-Za-z0-9._-]*")
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
MIN_WORDS, MAX_WORDS = 40, 120
MAX_DF = 5
NEAR_DISTANCE = 2
MIN_NEAR_SHARE = 0.5
MAX_MEAN_JACCARD = 0.15
KINDS = ("exact", "paraphrase")
# A small English stopword list for the overlap measure.
_STOPWORD_TEXT = """
a an the and or but if then so of to in on at by for with from into onto about as is are was
were be been being am do does did done have has had having i me my we our us you your it its
this that these those there here what which who whom whose when where why how can could
should would will shall may might must not no nor than too very just also any all some each
s t don't i'm i've it's what's can't won't isn't
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.violations.append(message)

    def say(self, message: str) -> None:
        self.lines.append(message)


def rare_tokens(text: str) -> set[str]:
    """Tokens like E-4172, PN-55012-B, v3.14.2, ERR_0x8007 (trailing punctuation dropped)."""
    found = (m.group().rstrip("._-") for m in RARE.finditer(text))
    return {t for t in found if len(t) >= 3}


def words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if w not in STOPWORDS}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def load_jsonl(path: Path, report: Report) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                report.fail(f"{path.name}:{number}: not JSON ({e})")
                continue
            if not isinstance(record, dict):
                report.fail(f"{path.name}:{number}: not an object")
                continue
            records.append(record)
    return records


def check_ids(records: list[dict[str, object]], pattern: str, what: str, report: Report) -> None:
    counts = Counter(str(r.get("id")) for r in records)
    for rid, n in counts.items():
        if n > 1:
            report.fail(f"{what} id {rid} used {n} times")
        if not re.fullmatch(pattern, rid):
            report.fail(f"{what} id {rid!r} does not match {pattern}")


def check_corpus(corpus: list[dict[str, object]], report: Report) -> dict[str, str]:
    check_ids(corpus, r"p\d{4}", "passage", report)
    texts: dict[str, str] = {}
    for r in corpus:
        pid, name, text = r.get("id"), r.get("name"), r.get("text")
        if not (isinstance(pid, str) and isinstance(name, str) and isinstance(text, str)):
            report.fail(f"passage {pid}: id, name and text must be strings")
            continue
        n = len(text.split())
        if not MIN_WORDS <= n <= MAX_WORDS:
            report.fail(f"passage {pid}: {n} words, not {MIN_WORDS}-{MAX_WORDS}")
        texts[pid] = text
    return texts


def check_questions(
    questions: list[dict[str, object]], texts: dict[str, str], report: Report
) -> list[tuple[str, str, str, list[str]]]:
    """Return (id, kind, question, answers) of the well-formed questions."""
    check_ids(questions, r"q\d{3}", "question", report)
    good: list[tuple[str, str, str, list[str]]] = []
    for r in questions:
        qid, kind, text, answers = r.get("id"), r.get("kind"), r.get("question"), r.get("answers")
        if kind not in KINDS or not isinstance(text, str) or not text.strip():
            report.fail(f"question {qid}: kind must be one of {KINDS} and question non-empty")
            continue
        if not isinstance(answers, list) or not answers:
            report.fail(f"question {qid}: no answers")
            continue
        missing = [a for a in answers if a not in texts]
        if missing or len(set(answers)) != len(answers):
            report.fail(f"question {qid}: unknown or repeated answer ids {answers}")
            continue
        good.append((str(qid), str(kind), text, [str(a) for a in answers]))
    return good


def near_duplicate(token: str, answers: list[str], tokens_of: dict[str, set[str]]) -> bool:
    for pid, tokens in tokens_of.items():
        if pid in answers:
            continue
        for other in tokens:
            close_in_length = abs(len(other) - len(token)) <= NEAR_DISTANCE
            if other != token and close_in_length and edit_distance(other, token) <= NEAR_DISTANCE:
                return True
    return False


def check_exact(
    exact: list[tuple[str, str, str, list[str]]], texts: dict[str, str], report: Report
) -> None:
    tokens_of = {pid: rare_tokens(text) for pid, text in texts.items()}
    df = Counter(t for tokens in tokens_of.values() for t in tokens)
    with_near = 0
    for qid, _, question, answers in exact:
        in_answer = rare_tokens(question) & set().union(*(tokens_of[a] for a in answers))
        if not in_answer:
            report.fail(f"exact {qid}: no rare token of {question!r} is in an answer passage")
            continue
        rare_enough = sorted(t for t in in_answer if df[t] <= MAX_DF)
        if not rare_enough:
            report.fail(f"exact {qid}: {sorted(in_answer)} are each in more than {MAX_DF} passages")
            continue
        if any(near_duplicate(t, answers, tokens_of) for t in rare_enough):
            with_near += 1
    share = with_near / len(exact) if exact else 0.0
    report.say(
        f"exact questions with a near-duplicate token in a wrong passage: "
        f"{with_near}/{len(exact)} ({share:.0%})"
    )
    if share < MIN_NEAR_SHARE:
        report.fail(f"only {share:.0%} of exact questions have a near-duplicate distractor")


def check_paraphrase(
    paraphrase: list[tuple[str, str, str, list[str]]], texts: dict[str, str], report: Report
) -> None:
    scores = [
        (max(jaccard(words(question), words(texts[a])) for a in answers), qid)
        for qid, _, question, answers in paraphrase
    ]
    if not scores:
        return
    mean = statistics.fmean(s for s, _ in scores)
    top = ", ".join(f"{qid} {s:.2f}" for s, qid in sorted(scores, reverse=True)[:5])
    report.say(
        f"paraphrase word overlap (Jaccard with best answer): mean {mean:.3f}, "
        f"median {statistics.median(s for s, _ in scores):.3f}, highest: {top}"
    )
    if mean >= MAX_MEAN_JACCARD:
        report.fail(f"paraphrase mean overlap {mean:.3f} is not below {MAX_MEAN_JACCARD}")


def run(folder: Path) -> Report:
    report = Report()
    corpus = load_jsonl(folder / "corpus.jsonl", report)
    questions = load_jsonl(folder / "questions.jsonl", report)
    texts = check_corpus(corpus, report)
    good = check_questions(questions, texts, report)
    kinds = Counter(kind for _, kind, _, _ in good)
    two = sum(1 for *_, answers in good if len(answers) > 1)
    answered = {a for *_, answers in good for a in answers}
    report.say(
        f"passages: {len(corpus)} ({len(answered)} are answers); questions: "
        f"{len(questions)} ("
        + ", ".join(f"{k} {kinds[k]}" for k in KINDS)
        + f"; {two} with two or more answers)"
    )
    check_exact([q for q in good if q[1] == "exact"], texts, report)
    check_paraphrase([q for q in good if q[1] == "paraphrase"], texts, report)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    report = run(args.dir)
    for line in report.lines:
        print(line)
    for violation in report.violations:
        print("VIOLATION:", violation)
    print("FAIL" if report.violations else "OK", f"({len(report.violations)} violations)")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
