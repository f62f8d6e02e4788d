"""Personal columns of a raw source (``sources.<name>.pii`` and ``pii_hashed``): dropped, or
replaced by their keyed hash, before the rows are validated, so that neither bronze nor
quarantine holds them."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from persona.errors import PersonaError
from persona.ingest.sources import STRING, SourceSpec
from persona.ingest.validation import KEPT
from persona.privacy.pseudonyms import pseudonym_column


def read_by(spec: SourceSpec, columns: list[str]) -> dict[str, str]:
    """raw column -> the canonical column that reads it (by name, or as a same-named
    optional column)."""
    mapping = {**{c: c for c in spec.types if c in columns}, **spec.columns}
    return {raw: canonical for canonical, raw in mapping.items() if isinstance(raw, str)}


def protect(raw: DataFrame, spec: SourceSpec, key: bytes | None,
            pseudonymized: bool) -> DataFrame:
    """``raw`` without its ``pii`` columns and with its ``pii_hashed`` ones as their keyed
    hash; a hashed column no canonical column reads is also kept as ``__kept_<name>``,
    which bronze holds under its own name. The user id's column is left to
    pseudonymization."""
    readers = read_by(spec, raw.columns)
    for key_name, names in (("pii", spec.pii), ("pii_hashed", spec.pii_hashed)):
        for name in names:
            where = f"sources.{spec.name}.{key_name}"
            if name not in raw.columns:
                raise PersonaError(f"{where}: column {name!r} not found in {spec.path}; "
                                   f"available: {', '.join(raw.columns)}")
            canonical = readers.get(name)
            if canonical == "user_id" and not pseudonymized:
                raise PersonaError(f"{where}: {name!r} is the user id: set "
                                   f"privacy.pseudonymize: true to replace it by a pseudonym")
            if key_name == "pii" and canonical not in (None, "user_id"):
                raise PersonaError(f"{where}: {name!r} is read as {canonical}: a dropped "
                                   f"column cannot be mapped (list it in pii_hashed to keep "
                                   f"its keyed hash)")
            if key_name == "pii_hashed" and canonical not in (None, "user_id") \
                    and spec.types[canonical] != STRING:
                raise PersonaError(f"{where}: {name!r} is read as {canonical}, a "
                                   f"{spec.types[canonical]}: only text columns can be hashed")
    out = raw.drop(*[n for n in spec.pii if readers.get(n) != "user_id"])
    for name in spec.pii_hashed:
        if readers.get(name) == "user_id":
            continue
        text = F.trim(F.col(f"`{name}`").cast("string"))
        hashed = pseudonym_column(F.when(text != "", text), key)
        out = out.withColumn(name, hashed)
        if name not in readers:
            out = out.withColumn(f"{KEPT}{name}", F.col(f"`{name}`"))
    return out
