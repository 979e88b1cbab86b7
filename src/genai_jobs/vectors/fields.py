"""The filterable fields of a version's chunks, column-wise, and a parsed filter's mask
over them (vectors/filters.py says what a filter is).

Numbers are kept as floats, everything else as codes into its sorted distinct
values: each condition is one vectorised comparison over every chunk, ranges of
text included (sorted values make a range of values a range of codes).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from genai_jobs.vectors.filters import BUILT_IN, Condition, Filter, FilterRejected, Group, Scalar

Mask = npt.NDArray[np.bool_]


class Fields:
    """The filterable fields of one version's chunks, column-wise, in seq order."""

    def __init__(self, rows: Sequence[tuple[str, str | None, int | None, Mapping[str, Any]]]
                 ) -> None:
        """`rows`: each chunk's document name, type, page and metadata, in seq order."""
        self.rows = len(rows)
        self._columns: dict[str, Column] = {
            "$documentName": Column.of([row[0] for row in rows]),
            "$documentType": Column.of([row[1] for row in rows]),
            "$page": Column.of([row[2] for row in rows]),
        }
        names = sorted({name for row in rows for name in row[3]})
        for name in names:
            self._columns[name] = Column.of([row[3].get(name) for row in rows])

    @property
    def size_bytes(self) -> int:
        return sum(column.size_bytes for column in self._columns.values())

    def mask(self, parsed: Filter) -> Mask:
        """Which chunks match; FilterRejected for a field the version lacks or a value
        of another type than the field's."""
        if isinstance(parsed, Group):
            masks = [self.mask(part) for part in parsed.parts]
            combine = np.logical_and if parsed.operator == "$and" else np.logical_or
            return np.asarray(combine.reduce(masks), dtype=np.bool_)
        column = self._columns.get(parsed.field)
        if column is None:
            known = [name for name in self._columns if not name.startswith("$")]
            raise FilterRejected(parsed.path[:-1], f"no field {parsed.field!r} in this vector "
                                 f"database: its metadata columns are {known or 'none'}, and "
                                 f"every chunk has {', '.join(BUILT_IN)}")
        return column.compare(parsed)


@dataclass(frozen=True, slots=True)
class Column:
    """One field's values: numbers as floats (NaN: none), other values as codes into
    their sorted distinct values (-1: none)."""

    kind: str  # "number", "boolean" or "text"
    numbers: npt.NDArray[np.float64] | None
    codes: npt.NDArray[np.int32] | None
    values: tuple[Any, ...]

    @classmethod
    def of(cls, raw: Sequence[Any]) -> Column:
        present = [value for value in raw if value is not None]
        if present and all(isinstance(value, int | float) and not isinstance(value, bool)
                           for value in present):
            numbers = np.array([np.nan if value is None else value for value in raw],
                               dtype=np.float64)
            return cls("number", numbers, None, ())
        kind = "boolean" if present and all(isinstance(value, bool) for value in present) \
            else "text"
        text = [None if value is None else (value if kind == "boolean" else str(value))
                for value in raw]
        distinct = sorted({value for value in text if value is not None})
        index = {value: code for code, value in enumerate(distinct)}
        codes = np.array([-1 if value is None else index[value] for value in text],
                         dtype=np.int32)
        return cls(kind, None, codes, tuple(distinct))

    @property
    def size_bytes(self) -> int:
        array = self.numbers if self.numbers is not None else self.codes
        return int(array.nbytes) if array is not None else 0

    def compare(self, condition: Condition) -> Mask:
        operator, value = condition.operator, condition.value
        if operator in ("$in", "$nin"):
            assert isinstance(value, tuple)
            found = np.asarray(np.logical_or.reduce(
                [self._equal(item, condition) for item in value]), dtype=np.bool_)
            return found if operator == "$in" else ~found
        assert not isinstance(value, tuple)
        if operator == "$eq":
            return self._equal(value, condition)
        if operator == "$ne":
            return ~self._equal(value, condition)
        return self._range(operator, value, condition)

    def _equal(self, value: Scalar, condition: Condition) -> Mask:
        self._check_type(value, condition)
        if self.numbers is not None:
            return np.asarray(self.numbers == float(value))
        assert self.codes is not None
        wanted = value if self.kind == "boolean" else str(value)
        try:
            code = self.values.index(wanted)
        except ValueError:
            return np.zeros(len(self.codes), dtype=np.bool_)
        return np.asarray(self.codes == code)

    def _range(self, operator: str, value: Scalar, condition: Condition) -> Mask:
        self._check_type(value, condition)
        if self.kind == "boolean":
            raise FilterRejected(condition.path, f"{condition.field} is a boolean: it takes "
                                 "$eq, $ne, $in and $nin")
        if self.numbers is not None:
            numbers = self.numbers
            bound = float(value)
            with np.errstate(invalid="ignore"):  # NaN (no value) compares false
                return {"$gt": numbers > bound, "$gte": numbers >= bound,
                        "$lt": numbers < bound, "$lte": numbers <= bound}[operator]
        assert self.codes is not None
        # Distinct values are sorted, so a range of values is a range of codes.
        text = str(value)
        low = bisect.bisect_right(self.values, text) if operator == "$gt" else \
            bisect.bisect_left(self.values, text)
        high = bisect.bisect_left(self.values, text) if operator == "$lt" else \
            bisect.bisect_right(self.values, text)
        codes = self.codes
        if operator in ("$gt", "$gte"):
            return np.asarray(codes >= low)
        return np.asarray((codes >= 0) & (codes < high))

    def _check_type(self, value: Scalar, condition: Condition) -> None:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        expected = {"number": is_number, "boolean": isinstance(value, bool),
                    "text": isinstance(value, str)}[self.kind]
        has_values = self.numbers is not None or bool(self.values)
        if not expected and has_values:
            raise FilterRejected(condition.path, f"{condition.field} holds "
                                 f"{self.kind} values, not {_kind_of(value)}")


def _kind_of(value: Scalar) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, int | float) else "text"
