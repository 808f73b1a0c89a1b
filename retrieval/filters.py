"""Filters in the engine: conditions on an item's columns and attributes, compiled to SQL.

A filter is a mapping `field -> condition`; every condition must hold (AND). A condition is a
value (equality) or a mapping of operators to values:

    {"modality": "image", "label": {"in": ["cat", "dog"]}, "duration": {">=": 2, "<": 10},
     "created_at": {">=": "2026-01-01"}}

Fields: the columns `modality`, `source`, `mime`, `path`, `key`, `duration`, `width`, `height`,
`size_bytes`, `created_at` (ISO dates); any other name is an attribute (`attrs.<name>` also
works). Operators: `=`, `!=`, `>`, `>=`, `<`, `<=`, `in`. The CLI spells the same conditions as
`--where "label in cat,dog" --where "duration>=2"` (`parse_where`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, not_

from retrieval.errors import CrossmediaError
from retrieval.store.models import Item

COLUMNS = {
    "modality",
    "source",
    "mime",
    "path",
    "key",
    "duration",
    "width",
    "height",
    "size_bytes",
    "created_at",
}
NUMERIC = {"duration", "width", "height", "size_bytes"}
OPS = ("<=", ">=", "!=", "=", "<", ">", "in")
_CLI = re.compile(r"^\s*([\w.]+)\s*(<=|>=|!=|==|=|<|>|\s+in\s+)\s*(.+?)\s*$", re.IGNORECASE)


class FilterError(CrossmediaError, ValueError):
    """A filter that cannot be understood; the message shows the accepted forms."""


def parse_where(clauses: Iterable[str]) -> dict[str, Any]:
    """CLI clauses (`label=cat`, `duration>=2`, `label in cat,dog`) -> a filter mapping."""
    out: dict[str, dict[str, Any]] = {}
    for clause in clauses:
        m = _CLI.match(clause)
        if m is None:
            raise FilterError(
                f"Cannot read the filter {clause!r}. Use FIELD=VALUE, FIELD>=NUMBER, "
                "FIELD<VALUE or 'FIELD in A,B,C' (e.g. --where 'label in cat,dog')."
            )
        field, op, raw = m.group(1), m.group(2).strip().lower().replace("==", "="), m.group(3)
        value: Any = [_scalar(v.strip()) for v in raw.split(",")] if op == "in" else _scalar(raw)
        out.setdefault(field, {})[op] = value
    return out


def _scalar(raw: str) -> Any:
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw.strip("'\"")


def compile_filter(where: Mapping[str, Any]) -> ColumnElement[bool]:
    """The SQL condition on `items` for a filter mapping."""
    parts = []
    for field, cond in where.items():
        conds = cond if isinstance(cond, Mapping) else {"=": cond}
        for op, value in conds.items():
            parts.append(_condition(field, str(op).lower(), value))
    return and_(*parts) if parts else and_(True)


def _condition(field: str, op: str, value: Any) -> ColumnElement[bool]:
    if op not in OPS:
        raise FilterError(f"Unknown operator {op!r} on {field!r}. Use one of {list(OPS)}.")
    if op == "in":
        if not isinstance(value, list) or not value:
            raise FilterError(f"'in' on {field!r} needs a non-empty list of values.")
        values = value
    else:
        values = [value]
    col = _column(field, values)
    values = [_coerce(field, v) for v in values]
    if op == "in":
        return col.in_(values)
    v = values[0]
    if isinstance(v, bool):  # SQL compares truth values with IS, and has no order on them
        if op not in ("=", "!="):
            raise FilterError(f"{field!r} is compared with true/false: use = or !=, not {op}.")
        return col.is_(v) if op == "=" else not_(col.is_(v))
    return {
        "=": col == v,
        "!=": not_(col == v) | col.is_(None),
        ">": col > v,
        ">=": col >= v,
        "<": col < v,
        "<=": col <= v,
    }[op]


def _column(field: str, values: list[Any]) -> Any:
    name = field.removeprefix("attrs.")
    if field in COLUMNS:
        return getattr(Item, field)
    if not re.fullmatch(r"\w+", name):
        raise FilterError(f"Bad field name {field!r}: letters, digits and _ only.")
    attr = Item.attrs[name]
    if all(isinstance(v, bool) for v in values):
        return attr.as_boolean()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return attr.as_float()
    if all(isinstance(v, str) for v in values):
        return attr.as_string()
    raise FilterError(
        f"Values compared with {field!r} must all be numbers, all text or all true/false."
    )


def _coerce(field: str, value: Any) -> Any:
    if field == "created_at":
        try:
            return datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise FilterError(
                f"created_at needs an ISO date such as 2026-01-31, got {value!r}."
            ) from exc
    if field in NUMERIC and not isinstance(value, int | float):
        raise FilterError(f"{field} is a number; got {value!r}.")
    return value
