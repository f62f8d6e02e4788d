"""A user-supplied feature table → the columns of silver/user_features (pure functions).

Bring-your-own features: a feature table given by ``features.input.*`` becomes
silver/user_features (and its labels, if any, silver/user_labels), in place of ingest and
feature engineering on raw sources."""
from __future__ import annotations

import re

import mlflow
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType
from pyspark.sql.utils import AnalysisException

from persona.errors import PersonaError
from persona.features.build import Scaler, column_stats
from persona.lake.versions import content_version
from persona.privacy.pseudonyms import Ids
from persona.runtime.context import StageContext

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
    stats = column_stats(df, columns)
    return df.fillna({c: float(stats[c]["mean"] or 0.0) for c in columns})


def raw_vector(df: DataFrame, columns: list[str], output: str = "features",
               divisor: float = 1.0) -> DataFrame:
    """``output``: the columns divided by ``divisor`` (1: as they are), as array<float>."""
    return df.withColumn(output, F.array(*[(F.col(c) / F.lit(divisor)).cast("float")
                                           for c in columns]))


def one_scale(ranges: dict[str, tuple[float, float]]) -> float | None:
    """The shared bound ``B`` of columns that are non-negative values on one scale, or None.

    ``ranges`` is each column's (min, max). One scale: no value below 0, and either no value
    above 1 (shares, one-hot, pixels in [0, 1]) or more than half of the columns that vary
    reaching the largest value B (pixels in 0..255 or 0..16). Counts, amounts and days,
    each with its own range, are not on one scale.
    """
    if not ranges or min(lo for lo, _ in ranges.values()) < 0:
        return None
    top = max(hi for _, hi in ranges.values())
    if top <= 0:
        return None
    if top <= 1:
        return top
    varying = [hi for lo, hi in ranges.values() if hi > lo]
    return top if varying and sum(hi == top for hi in varying) * 2 > len(varying) else None


LABELS_TABLE = "silver/user_labels"


def configured(config) -> bool:
    """Whether ``features.input.path`` is set."""
    return bool(config.get("features.input.path"))


def settings(config) -> dict:
    """``features.input.*`` as the import reads them."""
    given = config.get("features.input")
    options = {"header": "true", "inferSchema": "true"} if given.format == "csv" else {}
    options.update({k: str(v).lower() if isinstance(v, bool) else str(v)
                    for k, v in given.options.items()})
    return {"path": config.path_of("features.input.path"), "format": given.format,
            "id_column": given.id_column, "label_column": given.label_column,
            "columns": given.columns, "scale": given.scale, "options": options}


def import_features(ctx: StageContext, table: str) -> None:
    """Read, check and scale the given table; write ``table`` and silver/user_labels."""
    s = settings(ctx.config)
    try:
        raw = ctx.spark.read.format(s["format"]).options(**s["options"]).load(s["path"])
    except AnalysisException as exc:
        first = str(exc).strip().splitlines()[0]
        raise PersonaError(f"features.input.path: cannot read {s['path']} as {s['format']}: "
                           f"{first}") from None
    mapping = renamed(feature_columns(raw, s["id_column"], s["label_column"],
                                            s["columns"]))
    columns = list(mapping.values())
    ids = Ids.of(ctx.config)  # pseudonyms when privacy.pseudonymize is on
    rows = (user_rows(raw, s["id_column"], mapping, s["label_column"])
            .withColumn("user_id", ids.column(F.col("user_id")))
            .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        counts = rows.agg(F.count(F.lit(1)).alias("n"), F.countDistinct("user_id").alias("ids"),
                          F.sum(F.col("user_id").isNull().cast("int")).alias("null_ids")).first()
        if counts["n"] == 0:
            raise PersonaError(f"features.input.path: {s['path']} has no rows")
        if counts["null_ids"]:
            raise PersonaError(f"features.input.id_column {s['id_column']!r} is empty in "
                               f"{counts['null_ids']} row(s)")
        if counts["ids"] < counts["n"]:
            raise PersonaError(f"features.input.id_column {s['id_column']!r} has "
                               f"{counts['n'] - counts['ids']} duplicate value(s)")
        filled = fill_means(rows, columns)
        scale, stats = s["scale"], {}
        if scale in ("auto", "range"):
            ranges = {c: (float(st["min"]), float(st["max"]))
                      for c, st in column_stats(filled, columns).items()}
            bound = one_scale(ranges) if scale == "auto" else \
                max(hi for _, hi in ranges.values()) or 1.0
            if scale == "auto":
                scale = "standard" if bound is None else "range"
                ctx.log.info("features.input.scale auto: %s", (
                    "the columns are not values on one scale: z-scores" if bound is None else
                    f"every column is a value in [0, {bound:g}] on one shared scale: divided "
                    f"by {bound:g}"))
            if bound is not None:
                stats = {"divisor": bound}
        if scale == "standard":
            scaler = Scaler.fit(filled, {"input": columns})
            out = scaler.transform(filled)
            stats = {"means": scaler.means, "stds": scaler.stds, "weights": scaler.weights}
        else:
            out = raw_vector(filled, columns, divisor=stats.get("divisor", 1.0))
        definition = {k: s[k] for k in ("path", "format", "id_column", "label_column")}
        definition.update(scale=scale, columns=mapping, stats=stats)
        version = content_version(definition, sort_keys=True)
        partitions = int(ctx.spark.conf.get("spark.sql.shuffle.partitions"))
        silver = (out.select("user_id", *columns, "features")
                  .withColumn("feature_set_version", F.lit(version))
                  .withColumn("as_of", F.lit(None).cast("timestamp"))
                  .repartition(partitions, "user_id"))
        ctx.lake.overwrite(silver, table)
        if s["label_column"]:
            ctx.lake.overwrite(rows.select("user_id", "label",
                                           F.lit(version).alias("feature_set_version")),
                               LABELS_TABLE)
    finally:
        rows.unpersist()
    ctx.log.info("%d users, %d features from %s (%s, scale %s), feature set %s%s", counts["n"],
                 len(columns), s["path"], s["format"], scale, version,
                 f"; labels of {s['label_column']!r} in {LABELS_TABLE}" if s["label_column"]
                 else "")
    ctx.metric("users", counts["n"])
    ctx.metric("features", len(columns))
    mlflow.set_tag("feature_set_version", version)
    mlflow.log_dict({**definition, "version": version}, "feature_set.json")
