"""Search quality of the three modes (dense, keyword, hybrid) on a labelled set: recall@10
and nDCG@10, overall and by kind of question (exact tokens, paraphrases).

    .venv/bin/python bench/retrieval.py                       # SQLite
    .venv/bin/python bench/retrieval.py --store postgres --out bench/results/retrieval

The set is bench/retrieval/ (its README says how it was made): passages of an
imaginary company's manuals, error references, release notes and policies, and
questions with the passages that answer them. A real `genai-jobs serve` builds a
vector database of the passages (one chunk each, the real model) and answers
every question in every mode over HTTP. Needs the `embeddings` extra; runs on
127.0.0.1 in a temporary folder or a scratch database.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [str(REPO), str(REPO / "src"),
               *(entry for entry in sys.path if Path(entry or ".").resolve() != REPO / "bench")]

from bench.vectors import _finished  # noqa: E402
from bench.versions import server_on  # noqa: E402
from tests.vectors_support import API, DATASETS  # noqa: E402

SET = REPO / "bench" / "retrieval"
MODES = ("dense", "keyword", "hybrid")
K = 10


def load(name: str) -> list[dict[str, Any]]:
    lines = (SET / name).read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def corpus_zip(passages: list[dict[str, Any]]) -> bytes:
    """Each passage a file named by its id (`passages/p0001.md`): a hit names its passage."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for passage in passages:
            archive.writestr(f"passages/{passage['id']}.md", passage["text"])
    return out.getvalue()


def recall_at(found: list[str], answers: set[str]) -> float:
    return len(set(found[:K]) & answers) / len(answers)


def ndcg_at(found: list[str], answers: set[str]) -> float:
    gain = sum(1 / math.log2(rank + 2) for rank, item in enumerate(found[:K]) if item in answers)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(answers), K)))
    return gain / ideal


def run(store: str) -> dict[str, Any]:
    passages, questions = load("corpus.jsonl"), load("questions.jsonl")
    scores: dict[str, dict[str, list[tuple[float, float]]]] = {mode: {} for mode in MODES}
    with (tempfile.TemporaryDirectory() as tmp,
          server_on(store, Path(tmp), "--workers", "1") as server,
          server.client(timeout=600) as client):
        response = client.post(f"{DATASETS}/fromFile/",
                               files={"file": ("set.zip", corpus_zip(passages), "application/zip")})
        assert response.status_code == 202, response.text
        created = client.post(f"{API}/vectorDatabases/", json={
            "datasetId": response.json()["catalogId"],
            "chunkingParameters": {"chunkSize": 254}})
        assert created.status_code == 202, created.text
        vdb = created.json()
        built = _finished(client, vdb["buildStatusId"])
        assert built["result"]["chunkCount"] == len(passages), built["result"]
        for question in questions:
            answers = set(question["answers"])
            for mode in MODES:
                found = client.post(f"{API}/vectorDatabases/{vdb['id']}/search/", json={
                    "query": question["question"], "k": K, "mode": mode})
                assert found.status_code == 200, found.text
                ids = [Path(hit["documentName"]).stem for hit in found.json()["data"]]
                scores[mode].setdefault(question["kind"], []).append(
                    (recall_at(ids, answers), ndcg_at(ids, answers)))
    return {"store": store, "passages": len(passages), "questions": len(questions),
            "modes": {mode: summary(by_kind) for mode, by_kind in scores.items()}}


def summary(by_kind: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    every = [pair for pairs in by_kind.values() for pair in pairs]
    result = {"recall_at_10": _mean(pair[0] for pair in every),
              "ndcg_at_10": _mean(pair[1] for pair in every)}
    for kind, pairs in sorted(by_kind.items()):
        result[kind] = {"questions": len(pairs), "recall_at_10": _mean(p[0] for p in pairs),
                        "ndcg_at_10": _mean(p[1] for p in pairs)}
    return result


def _mean(values: Any) -> float:
    return round(statistics.mean(values), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = run(args.store)
    modes = result["modes"]
    best_single = {metric: max(modes["dense"][metric], modes["keyword"][metric])
                   for metric in ("recall_at_10", "ndcg_at_10")}
    result["hybrid_at_least_best_single"] = all(
        modes["hybrid"][metric] >= value for metric, value in best_single.items())
    print(json.dumps(result, indent=2), flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"results-{args.store}.json").write_text(json.dumps(result, indent=2)
                                                             + "\n")


if __name__ == "__main__":
    main()
