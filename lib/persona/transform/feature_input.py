"""A user-supplied feature table → the columns of silver/user_features (pure functions)."""
from __future__ import annotations

import re

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from persona.errors import PersonaError

RESERVED = ("user_id", "features", "feature_set_version", "as_of", "label")


def column_name(name: str) -> str:
    """A Delta- and SQL-safe column name: characters other than letters, digits and ``_``
    become ``_``; a leading digit gets an ``f`` in front."""
    safe = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return f"f{safe}" if not safe or safe[0].isdigit() else safe


def feature_columns(df: DataFrame, id_column: str, label_column: str | None,
                    columns: list[str] | None) -> list[str]:
    """The input's feature columns: ``columns`` if given, else every numeric column other
    than the id and the label. Each must exist and be numeric."""
    for key, name in (("id_column", id_column), ("label_column", label_column)):
        if name is not None and name not in df.columns:
            raise PersonaError(f"features.input.{key}: column {name!r} not found; "
                               f"available: {', '.join(df.columns)}")
    types = {f.name: f.dataType for f in df.schema.fields}
    if columns is None:
        chosen = [c for c in df.columns if c not in (id_column, label_column)
                  and isinstance(types[c], NumericType)]
        if not chosen:
            raise PersonaError("features.input: no numeric feature columns besides the id "
                               "and the label")
        return chosen
    missing = [c for c in columns if c not in types]
    if missing:
        raise PersonaError(f"features.input.columns: not found: {', '.join(missing)}")
    wrong = [c for c in columns if not isinstance(types[c], NumericType)]
    if wrong:
        raise PersonaError(f"features.input.columns: not numeric: "
                           f"{', '.join(f'{c} ({types[c].simpleString()})' for c in wrong)}")
    return list(columns)


def renamed(columns: list[str]) -> dict[str, str]:
    """Input column → safe column name, checked for clashes."""
    mapping = {c: column_name(c) for c in columns}
    seen: dict[str, str] = {}
    for source, target in mapping.items():
        if target in RESERVED:
            raise PersonaError(f"features.input: feature column {source!r} would be named "
                               f"{target!r}, which silver/user_features reserves")
        if target in seen:
            raise PersonaError(f"features.input: columns {seen[target]!r} and {source!r} "
                               f"both become {target!r}")
        seen[target] = source
    return mapping


def user_rows(df: DataFrame, id_column: str, mapping: dict[str, str],
              label_column: str | None = None) -> DataFrame:
    """user_id (string), the feature columns as doubles under their safe names, and
    ``label`` (string) when a label column is given."""
    cols = [F.col(f"`{id_column}`").cast("string").alias("user_id")]
    cols += [F.col(f"`{source}`").cast("double").alias(target) for source, target in mapping.items()]
    if label_column is not None:
        cols.append(F.col(f"`{label_column}`").cast("string").alias("label"))
    return df.select(*cols)


def fill_means(df: DataFrame, columns: list[str]) -> DataFrame:
    """Missing values → the column's mean (0 for a column with no values)."""
    means = df.agg(*[F.avg(c).alias(c) for c in columns]).first().asDict()
    return df.fillna({c: float(means[c] or 0.0) for c in columns})


def raw_vector(df: DataFrame, columns: list[str], output: str = "features") -> DataFrame:
    """``output``: the columns as they are, as array<float> (for ``scale: none``)."""
    return df.withColumn(output, F.array(*[F.col(c).cast("float") for c in columns]))
