"""A fuzzing pass over every operation of `/openapi.json`, on SQLite and on PostgreSQL.

Schemathesis reads the document that a real `genai-jobs serve` publishes on a loopback
port and runs its phases against it, as `schemathesis run` would: coverage (boundary
and invalid values, missing fields, undeclared methods, no token or a bad one), fuzzing
(Hypothesis' requests, valid and invalid) and stateful (chains that feed one answer's
ids to the next request). Every answer is checked: never a 5xx; a status code the
operation declares; a body, headers and content type as declared; a request the schema
calls invalid refused with a 4xx, one it calls valid not refused (but for the refusals
in `SEMANTIC_REFUSALS`, each with the reason the document cannot state it); a request
without a live token a 401; a 405's `Allow` true to the document.

Random ids reach only 404s, so each pass first makes real things to aim at (a queued
job, an aborted one, a dataset and its COMPLETED ingest, a vector database whose build
is queued) and binds the id parameters to them half of the time (schemathesis'
dictionaries, drawn by Hypothesis like the rest). A pass runs with a tenant's token on
every operation, and another with an admin's, who sees every tenant's things and may
set tenants' limits.

Bounded and reproducible: a fixed seed, no example database and no schemathesis cache
(nothing from an earlier run steers this one), `MAX_EXAMPLES` cases an operation and
`STATEFUL_EXAMPLES` chains, no shrinking, one request at a time, long-polls held at
most a second (`GENAI_JOBS_MAX_WAIT_SECONDS`), and a time-out on each pass. The same
seed sends the same requests: two runs answered each operation with the same status
codes, as often. A pass takes 10-30 s here, a store's two about 45 s with the server.

The server runs with `--workers 0`: no submitted job ever runs, so no answer depends
on a worker's timing, a fuzzed payload never reaches a handler (the test app's handlers
write to files their payload names), and no pass waits on the embedding model loading;
search and export of a vector database that is not built answer their declared 409.

Schemathesis' engine (what `schemathesis run` drives) runs the passes rather than its
pytest plugin, whose schemas loaded from a fixture do not run under pytest 9.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from requests.structures import CaseInsensitiveDict
from schemathesis.core.failures import Failure
from schemathesis.engine import Status, StopReason, events, from_schema
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.pg_support import scratch_store
from tests.support import Server, running_server, submit

# A pass (one test) takes 10-30 s on this 2-core machine; it fails past this.
PASS_TIMEOUT_SECONDS = 90
pytestmark = [pytest.mark.slow, pytest.mark.timeout(PASS_TIMEOUT_SECONDS)]

API = "/api/v2/genai"
SEED = 20241207
# Cases an operation in the fuzzing phase, each way (valid and invalid); the coverage
# phase adds its own, as many as the declaration has boundaries.
MAX_EXAMPLES = 20
# Stateful chains, and the most requests in one.
STATEFUL_EXAMPLES = 15
STATEFUL_STEPS = 6
REQUEST_TIMEOUT_SECONDS = 10
# What an operation answers when its own logic never got to the request.
NOT_REACHED = {401, 404, 405, 422}
# Operations whose valid input no schema can describe, so that the fuzzer reaches their
# own logic by chance only; the `targets` fixture sends them real ones, answered 202.
REACHED_BY_FIXTURES = {
    "POST /api/v2/datasets/fromFile/":
        "a valid upload is a readable document (text, a PDF with text, a zip of them): "
        "random bytes under a random name are refused for what they hold (a 422 on file)",
    "PUT /api/v2/genai/vectorDatabases/{vectorDatabaseId}/activeVersion/":
        "the body must name a version of the path's family, which the fuzzer draws only by "
        "chance; the fixture names one (not built, with no workers: its 409)",
    "POST /api/v2/genai/vectorDatabases/{vectorDatabaseId}/versions/":
        "an update needs a dataset and a version of the family that are both real, which "
        "the fuzzer draws together by chance only; the fixture sends them (its 409: the "
        "family has no built version with no workers)",
}

# 422s for requests the document calls valid that are still right, each because the
# document cannot say what the server checks. `positive_data_acceptance` forgives a 422
# only when every item of its `detail` matches one of these (location prefix, type);
# None matches any type.
SEMANTIC_REFUSALS: dict[tuple[tuple[str, ...], str | None], str] = {
    (("body", "jobType"), "unknown_job_type"):
        "job types are the deployment's registry (GET jobTypes/ lists them)",
    (("body", "payload"), None):
        "each job type's payload is checked against its handler's own model",
    (("body", "file"), None):
        "an upload is judged by what it holds: its type, its text, a zip's entries",
    (("body", "chunkingParameters", "embeddingModel"), "unknown_model"):
        "embedding models are the installation's (GET supportedEmbeddings/)",
    (("body", "chunkingParameters", "chunkSize"), "less_than_equal"):
        "the largest chunk is the embedding model's (GET supportedTextChunkings/)",
    (("body", "chunkingParameters"), "differs_from_parent"):
        "a new version chunks as the vector database it is made from",
    ((), "not_supported"):
        "DataRobot's fields for features not served here are taken in DataRobot's shape "
        "and refused by name (custom chunking, regex separators, credentials, ...)",
    (("body", "expiresIn"), "less_than_equal"):
        "the longest deadline is a setting (GENAI_JOBS_MAX_EXPIRES_IN_SECONDS)",
    (("body", "maxAttempts"), "less_than_equal"):
        "the most attempts is a setting (GENAI_JOBS_MAX_MAX_ATTEMPTS)",
    (("body", "priority"), "less_than_equal"):
        "a tenant's highest priority is an admin's to set (PUT tenants/{tenant}/limits/)",
    (("body", "filter"), "invalid_filter"):
        "a search filter is a small language over the version's own metadata columns "
        "(operators, value types, nesting)",
    ((), "other_family"):
        "a version named in a body must belong to the family of the one in the path",
}
# JSON Schema's `integer` admits 45.0, but the server takes JSON numbers of their kind
# and refuses a float for an integer (api/schemas.py, SubmitRequest): no schema says so.
FLOAT_FOR_INTEGER = "int_type"


@dataclass(frozen=True)
class Targets:
    """Real things on the server for the fuzzer to aim at; `expendable` ones are only
    given to DELETE operations, so that the rest keep theirs for the whole pass."""

    status_ids: list[str]
    dataset_ids: list[str]
    vector_database_ids: list[str]
    expendable_dataset_ids: list[str]
    expendable_vector_database_ids: list[str]


@dataclass
class Findings:
    """What one pass saw: failures by operation, each operation's status codes, and
    how many requests each phase sent."""

    failures: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    answers: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    requests: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    stop_reason: StopReason | None = None

    def report(self) -> str:
        lines = [f"{operation}: {failure}" for operation, found in sorted(self.failures.items())
                 for failure in sorted(found)]
        return "\n".join([*lines, *self.errors, f"requests by phase: {dict(self.requests)}"])


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with scratch_store(request.param) as url, running_server(
            tmp_path_factory.mktemp(f"fuzz-{request.param}"), "--workers", "0",
            env={"GENAI_JOBS_MAX_WAIT_SECONDS": "1"}, database_url=url) as running:
        yield running


@pytest.fixture(scope="module")
def tenant_token(server: Server) -> str:
    return server.make_token("fuzz")


@pytest.fixture
def targets(server: Server, tenant_token: str) -> Targets:
    """Made anew for each pass (a pass may delete what it finds), all the tenant's."""
    with server.client(tenant_token) as client:
        queued = submit(client, "diagnostics.sleep", {"seconds": 1})
        aborted = submit(client, "diagnostics.sleep", {"seconds": 1})
        assert client.delete(f"{API}/status/{aborted}/").status_code == 202
        datasets = [_upload(client, name) for name in ("kept.txt", "expendable.md")]
        vdbs = [_vector_database(client, datasets[0]["catalogId"], name)
                for name in ("kept", "expendable")]
        kept = vdbs[0]["id"]
        chosen = client.put(f"{API}/vectorDatabases/{kept}/activeVersion/",
                            json={"vectorDatabaseId": kept})
        assert chosen.status_code == 409, chosen.text
        updated = client.post(f"{API}/vectorDatabases/{kept}/versions/", json={
            "datasetId": datasets[0]["catalogId"], "mode": "replace"})
        assert updated.status_code == 409, updated.text
    return Targets(
        status_ids=[queued, aborted, datasets[0]["statusId"], vdbs[0]["buildStatusId"]],
        dataset_ids=[datasets[0]["catalogId"]],
        vector_database_ids=[vdbs[0]["id"]],
        expendable_dataset_ids=[datasets[1]["catalogId"]],
        expendable_vector_database_ids=[vdbs[1]["id"]],
    )


def _upload(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.post("/api/v2/datasets/fromFile/", files={
        "file": (name, b"The fuzzer aims at this.\n\nAnd at this.", "text/plain")})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def _vector_database(client: httpx.Client, dataset_id: str, name: str) -> dict[str, Any]:
    response = client.post(f"{API}/vectorDatabases/", json={"datasetId": dataset_id,
                                                            "name": name})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def fuzz_config(base_url: str, targets: Targets) -> schemathesis.Config:
    def bound(dictionary: str) -> dict[str, Any]:
        return {"dictionary": dictionary, "probability": 0.5}

    return schemathesis.Config.from_dict({
        "base-url": base_url,
        "seed": SEED,
        "workers": 1,
        "request-timeout": REQUEST_TIMEOUT_SECONDS,
        # No cache of earlier runs: it would steer this one, and it is kept in the checkout.
        "cache": {"enabled": False},
        # No shrinking: a failure is reported as first met, not after re-sending dozens of
        # requests. The token is `Token`'s, not generated: made-up Authorization headers
        # only ever meet the 401 that the coverage phase's no token and bad token check.
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none", "no-shrink": True,
                       "with-security-parameters": False},
        "phases": {"stateful": {"max-steps": STATEFUL_STEPS,
                                "generation": {"max-examples": STATEFUL_EXAMPLES}}},
        "dictionaries": {
            "status-ids": {"values": targets.status_ids},
            # Job types whose payload model takes any object (the test app's `Nothing`).
            "job-types": {"values": ["test.location", "test.permanent_failure"]},
            "dataset-ids": {"values": targets.dataset_ids},
            "vector-database-ids": {"values": targets.vector_database_ids},
            "expendable-dataset-ids": {"values": targets.expendable_dataset_ids},
            "expendable-vector-database-ids": {"values": targets.expendable_vector_database_ids},
        },
        "parameters": {
            "path.statusId": bound("status-ids"),
            "body.jobType": bound("job-types"),
            "path.datasetId": bound("dataset-ids"),
            "body.datasetId": bound("dataset-ids"),
            "path.vectorDatabaseId": bound("vector-database-ids"),
            "body.parentVectorDatabaseId": bound("vector-database-ids"),
        },
        "operations": [
            # `use_after_free` takes a 2xx DELETE for a deletion. DELETE of a status is
            # the seed's abort: the job stays, ABORTED, and is read like any other; DELETE
            # of a tenant's limits lifts them: GET then answers them lifted (nulls).
            {"include-path-regex": r"\{statusId\}|/tenants/\{tenant\}/limits/",
             "checks": {"use_after_free": {"enabled": False}}},
            {"include-method": "DELETE", "include-path-regex": "/datasets/",
             "parameters": {"path.datasetId": bound("expendable-dataset-ids")}},
            {"include-method": "DELETE", "include-path-regex": "/vectorDatabases/",
             "parameters": {"path.vectorDatabaseId": bound("expendable-vector-database-ids")}},
        ],
    })


def load_schema(server: Server, token: str, targets: Targets) -> OpenApiSchema:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json",
                                           config=fuzz_config(server.url, targets))

    @schema.auth()
    class Token:
        def get(self, case: schemathesis.Case[Any], ctx: schemathesis.AuthContext) -> str:
            return token

        def set(self, case: schemathesis.Case[Any], data: str,
                ctx: schemathesis.AuthContext) -> None:
            case.headers = CaseInsensitiveDict(
                {**dict(case.headers or {}), "Authorization": f"Bearer {data}"})

    @schema.hook("filter_failure")
    def unless_semantic(context: schemathesis.HookContext, failure: Failure,
                        case: schemathesis.Case[Any], response: schemathesis.Response) -> bool:
        return not (failure.title == "Schema-valid request rejected"
                    and response.status_code == 422 and _semantic(case, response))

    return schema


def _semantic(case: schemathesis.Case[Any], response: schemathesis.Response) -> bool:
    """Whether every item of a 422 is a refusal the document cannot state."""
    try:
        items = orjson.loads(response.content)["detail"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False
    return isinstance(items, list) and bool(items) and all(
        _refusal_reason(case, item) is not None for item in items)


def _refusal_reason(case: schemathesis.Case[Any], item: dict[str, Any]) -> str | None:
    loc, kind = tuple(str(part) for part in item.get("loc", ())), item.get("type")
    if kind == FLOAT_FOR_INTEGER and _is_integral_float(_sent(case, loc)):
        return FLOAT_FOR_INTEGER
    return next((reason for (prefix, wanted), reason in SEMANTIC_REFUSALS.items()
                 if loc[:len(prefix)] == prefix and wanted in (None, kind)), None)


def _sent(case: schemathesis.Case[Any], loc: tuple[str, ...]) -> Any:
    """The value a request sent at a 422's `loc` (body locations only)."""
    value: Any = case.body if loc[:1] == ("body",) else None
    for key in loc[1:]:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _is_integral_float(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def fuzz(schema: OpenApiSchema) -> Findings:
    """Run every phase of the engine over `schema`; collect what it found."""
    findings = Findings()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            _record(findings, event)
        elif isinstance(event, events.NonFatalError):
            findings.errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            findings.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            findings.stop_reason = event.stop_reason
            findings.errors.extend(f"after the run: {failure.title}"
                                   for failure in event.failures)
    return findings


def _record(findings: Findings, event: events.ScenarioFinished) -> None:
    recorder = event.recorder
    findings.requests[event.phase.value] += len(recorder.interactions)
    for case_id, interaction in recorder.interactions.items():
        if interaction.response is not None:
            operation = recorder.cases[case_id].value.operation.label
            findings.answers[operation][interaction.response.status_code] += 1
    for case_id, checks in recorder.checks.items():
        seen = recorder.interactions.get(case_id)
        answer = b"" if seen is None or seen.response is None else (
            seen.response.content or b"")
        for check in checks:
            if check.status is Status.FAILURE and check.failure_info is not None:
                failure = check.failure_info.failure
                summary = " ".join((failure.message or "").strip().splitlines()[:1])
                findings.failures[recorder.label].add(
                    f"{failure.title}: {summary}\n    {_one_line(check.failure_info.code_sample)}"
                    f"\n    -> {_one_line(answer.decode(errors='replace'))}")


def _one_line(code: str) -> str:
    return re.sub(r"\s+", " ", code)[:400]


@pytest.fixture(scope="module")
def documented(server: Server) -> set[str]:
    """Every operation of the served document, as "METHOD /path"."""
    paths = httpx.get(f"{server.url}/openapi.json", timeout=10).json()["paths"]
    return {f"{method.upper()} {path}" for path, item in paths.items() for method in item}


@pytest.mark.parametrize("caller", ["tenant", "admin"])
def test_every_operation_answers_as_declared(server: Server, tenant_token: str,
                                             targets: Targets, documented: set[str],
                                             caller: str) -> None:
    token = tenant_token if caller == "tenant" else server.admin_token
    findings = fuzz(load_schema(server, token, targets))

    assert findings.stop_reason is StopReason.COMPLETED, findings.report()
    assert not findings.errors, findings.report()
    assert not findings.failures, findings.report()
    assert set(findings.requests) >= {"coverage", "fuzzing", "stateful"}, findings.report()
    unsent = documented - set(findings.answers)
    assert not unsent, f"operations never sent: {sorted(unsent)}"
    unreached = {operation for operation in documented - set(REACHED_BY_FIXTURES)
                 if not set(findings.answers[operation]) - NOT_REACHED}
    assert not unreached, "operations whose own logic never answered: " + "; ".join(
        f"{operation} {dict(findings.answers[operation])}" for operation in sorted(unreached))
