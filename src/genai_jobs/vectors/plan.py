"""What a new version of a vector database is made of: its parent's documents and a
dataset's, compared document by document. Pure functions, no I/O.

Documents are matched by name; a CSV may name two rows alike, so the n-th
document of a name is matched with the parent's n-th of that name. A matched
document whose digest (bytes, type and metadata) is unchanged keeps its
parent's chunks as they are, vectors included; any other is chunked again, and
each of its chunks is looked up by content key before the model is asked.

- `add`: the parent's documents stay in their order, a changed one in its
  place; documents new to the version follow, in the dataset's order.
- `replace`: the version holds the dataset's documents in its order; the
  parent's others are deleted.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from genai_jobs.vectors.records import (
    DocumentInfo,
    DocumentRecord,
    UpdateMode,
    VectorDatabase,
)


def chunking_key(vdb: VectorDatabase) -> str:
    """What besides its text decides a chunk's vector and bounds: the model and the
    chunking parameters. Two chunks with the same text and this key are the same chunk."""
    return json.dumps([vdb.embedding_model, vdb.chunking_method, vdb.chunk_size,
                       vdb.chunk_overlap, list(vdb.separators)])


def content_key(chunking: str, text: str) -> str:
    return hashlib.sha256(f"{chunking}\0{text}".encode()).hexdigest()


def document_digest(info: DocumentInfo, content_digest: str) -> str:
    """A document as a version holds it: its bytes, type and metadata (a CSV row whose
    metadata changed is a changed document, though its vectors are reused)."""
    metadata = json.dumps(dict(info.metadata), sort_keys=True, default=str)
    return hashlib.sha256(f"{info.kind.value}\0{metadata}\0{content_digest}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Keep:
    """A parent's document kept as it is: its chunk rows and vectors are copied."""

    record: DocumentRecord


@dataclass(frozen=True, slots=True)
class Make:
    """A document chunked from the dataset: new, or changed (`replaces` its old self)."""

    document: DocumentInfo
    digest: str
    replaces: DocumentRecord | None


Step = Keep | Make


@dataclass
class Counts:
    added: int = 0
    updated: int = 0
    skipped: int = 0  # unchanged, kept as they were
    deleted: int = 0

    def as_json(self) -> dict[str, int]:
        return {"added": self.added, "updated": self.updated, "skipped": self.skipped,
                "deleted": self.deleted}


@dataclass
class Changes:
    """What a build changed from its parent. Chunks: `added` and `updated` count the
    new version's chunks of added and changed documents; `skipped` those copied
    unchanged; `deleted` the parent's chunks it no longer holds (of deleted documents,
    and the old chunks of changed ones). Of the added and updated chunks, `embedded`
    went to the model and `reused` found their vector in the family."""

    documents: Counts = field(default_factory=Counts)
    chunks: Counts = field(default_factory=Counts)
    embedded: int = 0
    reused: int = 0

    def as_json(self) -> dict[str, object]:
        return {"documents": self.documents.as_json(),
                "chunks": {**self.chunks.as_json(), "embedded": self.embedded,
                           "reused": self.reused}}


@dataclass(frozen=True, slots=True)
class Plan:
    steps: list[Step]
    deleted: list[DocumentRecord]

    def changes(self) -> Changes:
        """The counts the plan decides; chunks of made documents are counted as built."""
        changes = Changes()
        for step in self.steps:
            if isinstance(step, Keep):
                changes.documents.skipped += 1
                changes.chunks.skipped += step.record.chunk_count
            elif step.replaces is None:
                changes.documents.added += 1
            else:
                changes.documents.updated += 1
                changes.chunks.deleted += step.replaces.chunk_count
        changes.documents.deleted = len(self.deleted)
        changes.chunks.deleted += sum(record.chunk_count for record in self.deleted)
        return changes


def plan_version(parent: Sequence[DocumentRecord],
                 dataset: Sequence[tuple[DocumentInfo, str]], mode: UpdateMode) -> Plan:
    """The steps that make the new version, in its order, and the parent's documents it
    drops; `dataset` pairs each document with its digest (document_digest)."""
    matched = _match(parent, dataset)
    steps: list[Step] = []
    if mode is UpdateMode.REPLACE:
        for position, (info, digest) in enumerate(dataset):
            steps.append(_step(info, digest, matched.get(position)))
        kept = {id(record) for record in matched.values()}
        return Plan(steps, [record for record in parent if id(record) not in kept])
    by_record = {id(record): position for position, record in matched.items()}
    for record in parent:
        found = by_record.get(id(record))
        steps.append(Keep(record) if found is None else _step(*dataset[found], record))
    steps.extend(Make(info, digest, None) for position, (info, digest) in enumerate(dataset)
                 if position not in matched)
    return Plan(steps, [])


def _step(info: DocumentInfo, digest: str, old: DocumentRecord | None) -> Step:
    if old is not None and old.digest == digest and old.kind is info.kind:
        return Keep(old)
    return Make(info, digest, old)


def _match(parent: Sequence[DocumentRecord],
           dataset: Sequence[tuple[DocumentInfo, str]]) -> dict[int, DocumentRecord]:
    """Dataset position -> the parent's document of the same name and occurrence."""
    by_name: dict[str, list[DocumentRecord]] = defaultdict(list)
    for record in parent:
        by_name[record.name].append(record)
    seen: dict[str, int] = defaultdict(int)
    matched: dict[int, DocumentRecord] = {}
    for position, (info, _) in enumerate(dataset):
        occurrence = seen[info.name]
        seen[info.name] += 1
        same_name = by_name.get(info.name, [])
        if occurrence < len(same_name):
            matched[position] = same_name[occurrence]
    return matched


def merged_ranges(ranges: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(parent_first, count, first_seq) ranges with neighbours that continue each other on
    both sides joined: an unchanged version copies in one statement, not one a document."""
    merged: list[tuple[int, int, int]] = []
    for parent_first, count, first_seq in ranges:
        if count == 0:
            continue
        if merged:
            last_parent, last_count, last_first = merged[-1]
            if (last_parent + last_count == parent_first
                    and last_first + last_count == first_seq):
                merged[-1] = (last_parent, last_count + count, last_first)
                continue
        merged.append((parent_first, count, first_seq))
    return merged
