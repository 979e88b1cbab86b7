"""The benchmark harness (bench/run.py) on tiny sizes, SQLite only, peers skipped.

Not a benchmark and not timed: it checks that every section still runs end to
end and that the report is written, so the harness cannot rot. Sections that
need wrk are skipped by the harness where wrk is missing; the vectors section
where the embeddings extra is (with it, it loads the real model: about half a
minute); the plots are drawn where matplotlib is installed (the benchmark's own
extra, not a test dependency).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, process_env

SECTIONS = ("status_get", "throughput", "roundtrip", "scale", "waiters", "memory", "vectors",
            "uploads", "hostile")
HOSTILE_CASES = {"slow", "longpolls", "pages", "distinct_pages", "uploads", "flood"}
NEED_WRK = ("status_get", "scale")
HAS_EMBEDDINGS = importlib.util.find_spec("sentence_transformers") is not None


@pytest.mark.slow
@pytest.mark.timeout(240)  # about 55 s without the vectors section, 85 s with it
def test_the_benchmark_harness_runs_on_tiny_sizes(tmp_path: Path) -> None:
    results, report, plots = tmp_path / "results.json", tmp_path / "BENCHMARKS.md", tmp_path / "p"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--smoke", "--no-peers",
         "--backends", "sqlite", "--max-minutes", "3", "--results", str(results),
         "--report", str(report), "--plots", str(plots)],
        cwd=REPO, env=process_env(), capture_output=True, text=True, timeout=230,
        stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    sections = json.loads(results.read_text())["sections"]
    has_wrk = shutil.which("wrk") is not None
    for name in SECTIONS:
        section = sections[name]
        assert "failed" not in section, (name, section.get("failed"))
        if (name in NEED_WRK and not has_wrk) or (name == "vectors" and not HAS_EMBEDDINGS):
            assert "skipped" in section
        else:
            assert "skipped" not in section, (name, section["skipped"])
    text = report.read_text()
    assert text.startswith("# Benchmarks")
    assert "## Targets" in text
    assert "| verdict |" in text
    if importlib.util.find_spec("matplotlib") is not None:
        assert (plots / "throughput.png").stat().st_size > 0
        assert (plots / "memory.png").stat().st_size > 0
    else:
        assert "no plot: matplotlib is not installed" in text
    assert sections["throughput"]["summary"]["ours-sqlite-http"]["jobs_per_second"]["n"] == 1
    assert sections["roundtrip"]["summary"]["ours-sqlite-inprocess"]["completed_p50"]["n"] == 1
    assert sections["waiters"]["summary"]["sqlite"]["missing"] == 0
    if HAS_EMBEDDINGS:
        _assert_vector_figures(sections["vectors"], text)
    _assert_upload_figures(sections["uploads"], text)
    _assert_hostile_figures(sections["hostile"], text)


def _assert_vector_figures(section: dict[str, Any], report: str) -> None:
    """Every part of the vectors section measured something, and the report shows it."""
    for part in ("throughput", "search", "http_search", "memory"):
        assert "skipped" not in section[part], (part, section[part])
    assert section["throughput"]["chunks"] > 0
    assert section["throughput"]["wall_ratio"] > 0
    assert section["search"]["exact_p50_ms"] > 0
    if importlib.util.find_spec("faiss") is not None:
        assert section["search"]["hnsw_recall_at_10"] > 0
    assert section["http_search"]["http_p50_ms"] > 0
    peaks = [size["peak_rss_mb"] for size in section["memory"].values()]
    assert len(peaks) == 2
    assert all(peak > 0 for peak in peaks)
    assert "## 7. Vector databases" in report
    assert "| Vector build throughput ≥ 0.9" in report


def _assert_upload_figures(section: dict[str, Any], report: str) -> None:
    """The SDK's upload and the floor's were both timed, and the SDK polled once."""
    sqlite = section["backends"]["sqlite"]
    assert "failed" not in sqlite, sqlite.get("failed")
    (size,) = sqlite["sizes"].values()
    assert size["sdk"]["n"] == size["floor"]["n"] == size["ingest"]["n"] == 1
    assert size["status_polls"] == 1
    assert sqlite["no_sdk_call_over_sleep"]
    assert "## 8. Dataset uploads" in report
    assert "| SDK upload of ≤ 50 MB vs the upload alone" in report


def _assert_hostile_figures(section: dict[str, Any], report: str) -> None:
    """Every hostile case ran once on SQLite, measured what its targets need, and the
    report has its part."""
    cases = {case["case"]: case for case in section["cases"]}
    assert set(cases) == HOSTILE_CASES
    for name, case in cases.items():
        assert "failed" not in case, (name, case.get("failed"))
        assert case["store"] == "sqlite"
        assert case["targets"], name
    slow = cases["slow"]
    assert slow["closed"] == slow["settings"]["sockets"]
    assert slow["probe"]["quiet"]["n"] > 0
    assert slow["probe"]["loaded"]["n"] > 0
    assert set(cases["longpolls"]["phases"]) == {"one", "status", "jobs"}
    for pages in ("pages", "distinct_pages"):
        assert cases[pages]["page_statuses"] == {"200": cases[pages]["settings"]["pages"]}
    assert cases["distinct_pages"]["settings"]["distinct"]
    assert cases["uploads"]["upload_statuses"] == {"202": cases["uploads"]["settings"]["uploads"]}
    assert len(cases["flood"]["b_start_seconds"]) == 5
    assert "## 9. Hostile clients and noisy tenants (issue 10)" in report
