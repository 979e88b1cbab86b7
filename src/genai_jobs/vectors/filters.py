"""Metadata filters of a search: parsed once, evaluated as a mask over every chunk of a
version, so that the nearest chunks are taken among those that match (never a top-k
cut first, which loses the matches at low selectivity).

A filter is JSON, in the form Chroma and MongoDB users know:

    {"team": "security"}                                 equals (short form)
    {"priority": {"$in": [1, 2]}, "public": true}        fields side by side: all hold
    {"reviewed": {"$gte": "2026-10-01", "$lt": "2026-11-01"}}
    {"$or": [{"team": "security"}, {"$page": {"$lte": 2}}]}

Fields are the version's metadata columns (a CSV dataset's) and three of every
chunk: `$documentName`, `$documentType` (text, markdown, html, pdf) and `$page`
(a PDF's, from 1). Operators: `$eq`, `$ne`, `$in`, `$nin`, `$gt`, `$gte`, `$lt`,
`$lte`; `$and` and `$or` take lists of filters. A chunk without a value for a
field matches no condition on it but `$ne` and `$nin`. Dates are ISO 8601 text
and compare as text, which orders them.

This module parses and checks a filter's form; vectors/fields.py evaluates it
against a version's chunks (which also finds fields the version lacks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from genai_jobs.domain import DomainError

BUILT_IN = ("$documentName", "$documentType", "$page")
COMPARISONS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte")
RANGES = ("$gt", "$gte", "$lt", "$lte")
LOGICAL = ("$and", "$or")
# Bounds that keep a filter cheap to check and to evaluate.
MAX_CONDITIONS = 64
MAX_IN_VALUES = 1000
MAX_DEPTH = 8

Scalar = str | int | float | bool


class FilterRejected(DomainError):
    """A filter that cannot be applied; `path` locates the fault within it."""

    def __init__(self, path: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.path = tuple(path)


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    operator: str
    value: Scalar | tuple[Scalar, ...]
    path: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Group:
    operator: str  # $and or $or
    parts: tuple[Filter, ...]


Filter = Condition | Group


def parse_filter(raw: Any) -> Filter:
    """The filter in `raw` (decoded JSON), or FilterRejected saying what is wrong."""
    count = [0]
    return _parse(raw, (), count, 0)


def _parse(raw: Any, path: tuple[str | int, ...], count: list[int], depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise FilterRejected(path, f"a filter nests at most {MAX_DEPTH} deep")
    if not isinstance(raw, dict) or not raw:
        raise FilterRejected(path, "a filter is a non-empty object of fields or $and/$or")
    parts: list[Filter] = []
    for key, value in raw.items():
        where = (*path, key)
        if key in LOGICAL:
            if not isinstance(value, list) or not value:
                raise FilterRejected(where, f"{key} takes a non-empty list of filters")
            parts.append(Group(key, tuple(_parse(item, (*where, at), count, depth + 1)
                                          for at, item in enumerate(value))))
        elif key.startswith("$") and key not in BUILT_IN:
            raise FilterRejected(where, f"unknown operator or field {key}: fields are metadata "
                                 f"columns and {', '.join(BUILT_IN)}; $and and $or combine")
        else:
            parts.extend(_conditions(key, value, where, count))
    return parts[0] if len(parts) == 1 else Group("$and", tuple(parts))


def _conditions(field: str, raw: Any, path: tuple[str | int, ...],
                count: list[int]) -> list[Filter]:
    operators = raw if isinstance(raw, dict) else {"$eq": raw}
    if not operators:
        raise FilterRejected(path, "a field's conditions are a value or an object of "
                             + ", ".join(COMPARISONS))
    found: list[Filter] = []
    for operator, value in operators.items():
        where = (*path, operator)
        count[0] += 1
        if count[0] > MAX_CONDITIONS:
            raise FilterRejected(where, f"a filter has at most {MAX_CONDITIONS} conditions")
        if operator not in COMPARISONS:
            raise FilterRejected(where, f"unknown operator {operator}: use one of "
                                 + ", ".join(COMPARISONS))
        found.append(Condition(field, operator, _value(operator, value, where), where))
    return found


def _value(operator: str, value: Any,
           path: tuple[str | int, ...]) -> Scalar | tuple[Scalar, ...]:
    if operator in ("$in", "$nin"):
        if not isinstance(value, list) or not value or len(value) > MAX_IN_VALUES:
            raise FilterRejected(path, f"{operator} takes a list of 1 to {MAX_IN_VALUES} "
                                 "values")
        return tuple(_scalar(item, (*path, at)) for at, item in enumerate(value))
    scalar = _scalar(value, path)
    if operator in RANGES and isinstance(scalar, bool):
        raise FilterRejected(path, f"{operator} compares numbers, text or dates, not booleans")
    return scalar


def _scalar(value: Any, path: tuple[str | int, ...]) -> Scalar:
    if isinstance(value, str | bool | int | float) and value == value:  # not NaN
        return value
    raise FilterRejected(path, "a value is text, a number or a boolean")
