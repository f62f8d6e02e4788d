"""Canonical input sources: their columns, and how a configuration maps raw columns onto them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from persona.config import resolve_path
from persona.config.fields import parse
from persona.config.schema import Rule, Source
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


@dataclass
class SourceSpec:
    """One configured source: where it is, and how its columns map to canonical ones."""

    name: str
    path: str
    format: str
    options: dict[str, Any]
    # canonical name -> raw column name, or {"expr": SQL expression over raw columns}
    columns: dict[str, Any]
    types: dict[str, str]
    required: tuple[str, ...]
    timestamp_format: str | None
    rules: list[Rule]  # quarantine rules: rows where ``when`` holds are rejected
    pii: list[str]  # personal raw columns dropped at ingest
    pii_hashed: list[str]  # personal raw columns kept as their keyed hash

    @classmethod
    def from_config(cls, name: str, section: dict[str, Any]) -> "SourceSpec":
        """The source ``sources.<name>`` from its configuration section (checked by the
        schema, defaults filled in)."""
        if name not in CANONICAL:
            raise PersonaError(
                f"sources.{name}: unknown source (expected one of {', '.join(CANONICAL)})")
        source = parse(Source, section, f"sources.{name}")
        options = {"header": "true"} if source.format == "csv" else {}
        options.update({k: str(v).lower() if isinstance(v, bool) else str(v)
                        for k, v in source.options.items()})

        canonical = CANONICAL[name]
        types = {col: typ for col, (typ, _) in canonical.items()}
        mapping = {col: col for col, (_, req) in canonical.items() if req}
        if name == "users":
            for col in source.attributes.categorical:
                types[col], mapping[col] = STRING, col
            for col in source.attributes.numeric:
                types[col], mapping[col] = DOUBLE, col
        mapping.update(source.columns)
        unknown = sorted(set(mapping) - set(types))
        if unknown:
            raise PersonaError(
                f"sources.{name}.columns: unknown canonical column(s) {', '.join(unknown)} "
                f"(expected some of {', '.join(types)})")
        return cls(
            name=name,
            path=resolve_path(source.path),
            format=source.format,
            options=options,
            columns=mapping,
            types=types,
            required=tuple(c for c, (_, req) in canonical.items() if req),
            timestamp_format=source.timestamp_format,
            rules=source.reject,
            pii=source.pii,
            pii_hashed=source.pii_hashed,
        )


def configured_sources(sources: dict[str, Any]) -> list[SourceSpec]:
    """The configured sources, ``events`` first; ``events`` is required."""
    if "events" not in sources:
        raise PersonaError("sources.events is missing: an events source is required")
    names = ["events"] + sorted(n for n in sources if n != "events")
    return [SourceSpec.from_config(n, sources[n] or {}) for n in names]
