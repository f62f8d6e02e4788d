"""Raw rows → canonical typed rows, each with the reason it is rejected (or null)."""
from __future__ import annotations

import re
from dataclasses import replace

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, TimestampNTZType, TimestampType
from pyspark.sql.utils import AnalysisException

from persona.errors import PersonaError
from persona.ingest.sources import DOUBLE, TIMESTAMP, SourceSpec

REASON = "_reason"
SOURCE_FILE = "_source_file"
INGESTED_AT = "_ingested_at"
BATCH = "_ingest_batch"  # the ingest batch that wrote the row (meta/ingest_batches)
# Raw columns kept in bronze under the rest of their name (the keyed hash of a personal column).
KEPT = "__kept_"


def safe_name(name: str) -> str:
    """A column name Delta accepts (no spaces or ``,;{}()=``)."""
    return re.sub(r"[ ,;{}()\n\t=]", "_", name)


def raw_names(columns: list[str], taken: tuple[str, ...] = ()) -> list[str]:
    """:func:`safe_name` of each raw column, unique regardless of case (as Delta compares
    names) among themselves and ``taken``: a name already used gets ``_2``, ``_3``, ..."""
    used, names = {t.lower() for t in taken}, []
    for column in columns:
        name = base = safe_name(column)
        suffix = 1
        while name.lower() in used:
            suffix += 1
            name = f"{base}_{suffix}"
        used.add(name.lower())
        names.append(name)
    return names


def _sql(raw: DataFrame, text: str, problem: str) -> Column:
    """A SQL expression over the raw columns, checked now so a mistake is one clear error."""
    try:
        column = F.expr(text)
        raw.select(column)
    except AnalysisException as exc:  # ParseException is an AnalysisException
        first = str(exc).strip().splitlines()[0]
        raise PersonaError(f"{problem} {text!r}: {first}") from None
    return column


def _source_column(raw: DataFrame, spec: SourceSpec, canonical: str) -> Column:
    mapped = spec.columns[canonical]
    if isinstance(mapped, dict):
        if "expr" not in mapped:
            raise PersonaError(f"sources.{spec.name}.columns.{canonical}: expected a column "
                               f"name or {{expr: <SQL expression>}}")
        return _sql(raw, str(mapped["expr"]),
                    f"sources.{spec.name}.columns.{canonical}: invalid expression")
    if mapped not in raw.columns:
        raise PersonaError(
            f"sources.{spec.name}: column {mapped!r} (mapped to {canonical}) not found in "
            f"{spec.path}; available: {', '.join(raw.columns)}")
    return F.col(f"`{mapped}`")


def _text(column: Column) -> Column:
    """Trimmed string, with empty strings as null."""
    text = F.trim(column.cast("string"))
    return F.when(text == "", None).otherwise(text)


def _parse(raw: DataFrame, spec: SourceSpec, canonical: str) -> tuple[Column, Column]:
    """(typed value, raw text) of one canonical column."""
    source = _source_column(raw, spec, canonical)
    text = _text(source)
    kind = spec.types[canonical]
    if kind == DOUBLE:
        return text.cast("double"), text
    if kind == TIMESTAMP:
        dtype = raw.select(source.alias("c")).schema["c"].dataType
        if isinstance(dtype, (TimestampType, TimestampNTZType, DateType)):
            return source.cast("timestamp"), text
        if spec.timestamp_format:
            return F.to_timestamp(text, spec.timestamp_format), text
        return F.to_timestamp(text), text
    return text, text


def validate(raw: DataFrame, spec: SourceSpec) -> DataFrame:
    """Add the canonical columns (typed) and ``_reason`` to ``raw``.

    Canonical columns not in the mapping are read from a raw column of the same name
    when there is one. A row is rejected, with the first reason that applies, when a required column is empty,
    a timestamp or number does not parse, or a configured ``reject`` rule holds.
    Raw columns are kept (renamed to Delta-safe names) for the quarantine table.
    """
    reasons: list[Column] = []
    typed: dict[str, Column] = {}
    # Optional canonical columns not mapped explicitly are taken from same-named raw columns.
    spec = replace(spec, columns={**{c: c for c in spec.types if c in raw.columns},
                                  **spec.columns})
    for canonical in spec.types:
        if canonical not in spec.columns:
            typed[canonical] = F.lit(None).cast(spec.types[canonical])
            continue
        value, text = _parse(raw, spec, canonical)
        typed[canonical] = value
        if canonical in spec.required:
            reasons.append(F.when(text.isNull(), F.lit(f"missing {canonical}")))
        if spec.types[canonical] == TIMESTAMP:
            reasons.append(F.when(text.isNotNull() & value.isNull(),
                                  F.lit(f"unparseable {canonical}")))
        elif spec.types[canonical] == DOUBLE:
            reasons.append(F.when(text.isNotNull() & value.isNull(),
                                  F.lit(f"{canonical} is not a number")))
    for rule in spec.rules:
        predicate = _sql(raw, rule.when, f"sources.{spec.name}.reject: invalid condition")
        reasons.append(F.when(F.coalesce(predicate, F.lit(False)), F.lit(rule.reason)))

    kept = [c for c in raw.columns if c != SOURCE_FILE]
    canonical_cols = [value.alias(f"__{name}") for name, value in typed.items()]
    names = raw_names(kept, (SOURCE_FILE, REASON, INGESTED_AT, BATCH,
                             *[f"__{n}" for n in typed]))
    raw_cols = [F.col(f"`{c}`").cast("string").alias(n) for c, n in zip(kept, names)]
    reason = F.coalesce(*reasons) if reasons else F.lit(None).cast("string")
    return raw.select(*raw_cols, *canonical_cols, F.col(SOURCE_FILE), reason.alias(REASON))


def accepted(validated: DataFrame, spec: SourceSpec) -> DataFrame:
    """The rows with no reason: canonical columns, kept raw columns, the source file,
    ingest time and batch."""
    lineage = [c for c in (SOURCE_FILE, INGESTED_AT, BATCH) if c in validated.columns]
    kept = [F.col(f"`{c}`").alias(c[len(KEPT):]) for c in validated.columns
            if c.startswith(KEPT)]
    return validated.where(F.col(REASON).isNull()).select(
        *[F.col(f"__{name}").alias(name) for name in spec.types], *kept, *lineage)


def rejected(validated: DataFrame) -> DataFrame:
    """The rejected rows: the raw row, the reason, the source file."""
    keep = [c for c in validated.columns if not c.startswith("__")]
    return validated.where(F.col(REASON).isNotNull()).select(*keep)
