"""Canonical input sources: their columns, and how a configuration maps raw columns onto them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from persona.errors import PersonaError

STRING, DOUBLE, TIMESTAMP = "string", "double", "timestamp"

# canonical column -> (type, required)
CANONICAL: dict[str, dict[str, tuple[str, bool]]] = {
    "events": {
        "user_id": (STRING, True),
        "event_time": (TIMESTAMP, True),
        "event_type": (STRING, True),
        "item_id": (STRING, False),
        "category": (STRING, False),
        "quantity": (DOUBLE, False),
        "amount": (DOUBLE, False),
        "session_id": (STRING, False),
        "channel": (STRING, False),
    },
    "users": {"user_id": (STRING, True)},
    "content": {
        "user_id": (STRING, True),
        "event_time": (TIMESTAMP, True),
        "text": (STRING, False),
        "rating": (DOUBLE, False),
    },
}
FORMATS = ("csv", "json", "parquet", "delta")


@dataclass
class Rule:
    """A quarantine rule: rows where the SQL predicate ``when`` holds are rejected."""

    reason: str
    when: str


@dataclass
class SourceSpec:
    """One configured source: where it is, and how its columns map to canonical ones."""

    name: str
    path: str
    format: str = "csv"
    options: dict[str, Any] = field(default_factory=dict)
    # canonical name -> raw column name, or {"expr": SQL expression over raw columns}
    columns: dict[str, Any] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    timestamp_format: str | None = None
    rules: list[Rule] = field(default_factory=list)

    @classmethod
    def from_config(cls, name: str, section: dict[str, Any]) -> "SourceSpec":
        if name not in CANONICAL:
            raise PersonaError(
                f"sources.{name}: unknown source (expected one of {', '.join(CANONICAL)})")
        if not section.get("path"):
            raise PersonaError(f"sources.{name}.path is missing")
        fmt = str(section.get("format", "csv")).lower()
        if fmt not in FORMATS:
            raise PersonaError(
                f"sources.{name}.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        options = {"header": "true"} if fmt == "csv" else {}
        options.update({k: str(v).lower() if isinstance(v, bool) else str(v)
                        for k, v in (section.get("options") or {}).items()})

        canonical = CANONICAL[name]
        types = {col: typ for col, (typ, _) in canonical.items()}
        mapping = {col: col for col, (_, req) in canonical.items() if req}
        if name == "users":
            attrs = section.get("attributes") or {}
            for col in attrs.get("categorical") or []:
                types[col], mapping[col] = STRING, col
            for col in attrs.get("numeric") or []:
                types[col], mapping[col] = DOUBLE, col
        mapping.update(section.get("columns") or {})
        unknown = sorted(set(mapping) - set(types))
        if unknown:
            raise PersonaError(
                f"sources.{name}.columns: unknown canonical column(s) {', '.join(unknown)} "
                f"(expected some of {', '.join(types)})")
        rules = [Rule(str(r["reason"]), str(r["when"])) for r in section.get("reject") or []]
        return cls(
            name=name,
            path=str(section["path"]),
            format=fmt,
            options=options,
            columns=mapping,
            types=types,
            required=tuple(c for c, (_, req) in canonical.items() if req),
            timestamp_format=section.get("timestamp_format"),
            rules=rules,
        )


def configured_sources(sources: dict[str, Any]) -> list[SourceSpec]:
    """The configured sources, ``events`` first; ``events`` is required."""
    if "events" not in sources:
        raise PersonaError("sources.events is missing: an events source is required")
    names = ["events"] + sorted(n for n in sources if n != "events")
    return [SourceSpec.from_config(n, sources[n] or {}) for n in names]
