"""Bring-your-own features: a feature table given by ``features.input.*`` becomes
silver/user_features (and its labels, if any, silver/user_labels), in place of ingest and
feature engineering on raw sources."""
from __future__ import annotations

import hashlib
import json

import mlflow
from pyspark import StorageLevel
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from persona.context import StageContext
from persona.errors import PersonaError
from persona.transform import feature_input as fi
from persona.transform.features import Scaler

LABELS_TABLE = "silver/user_labels"
FORMATS = ("parquet", "delta", "csv")
SCALES = ("standard", "none")


def configured(config) -> bool:
    """Whether ``features.input.path`` is set."""
    return bool(config.get("features.input.path", None))


def settings(config) -> dict:
    """``features.input.*``, checked, with defaults."""
    fmt = str(config.get("features.input.format", "parquet")).lower()
    if fmt not in FORMATS:
        raise PersonaError(f"features.input.format must be one of {', '.join(FORMATS)}, "
                           f"got {fmt!r}")
    id_column = config.get("features.input.id_column", None)
    if not id_column:
        raise PersonaError("features.input.id_column is missing: name the column that "
                           "identifies each user")
    scale = config.choice("features.input.scale", SCALES, "standard")
    columns = config.get("features.input.columns", None)
    if columns is not None and (not isinstance(columns, list) or not columns):
        raise PersonaError("features.input.columns must be a non-empty list of column names")
    options = {"header": "true", "inferSchema": "true"} if fmt == "csv" else {}
    options.update({k: str(v).lower() if isinstance(v, bool) else str(v)
                    for k, v in (config.get("features.input.options", None) or {}).items()})
    return {"path": config.path_of("features.input.path"), "format": fmt,
            "id_column": str(id_column), "label_column": config.get(
                "features.input.label_column", None), "columns": columns, "scale": scale,
            "options": options}


def import_features(ctx: StageContext, table: str) -> None:
    """Read, check and scale the given table; write ``table`` and silver/user_labels."""
    s = settings(ctx.config)
    try:
        raw = ctx.spark.read.format(s["format"]).options(**s["options"]).load(s["path"])
    except AnalysisException as exc:
        first = str(exc).strip().splitlines()[0]
        raise PersonaError(f"features.input.path: cannot read {s['path']} as {s['format']}: "
                           f"{first}") from None
    mapping = fi.renamed(fi.feature_columns(raw, s["id_column"], s["label_column"],
                                            s["columns"]))
    columns = list(mapping.values())
    rows = fi.user_rows(raw, s["id_column"], mapping, s["label_column"]).persist(
        StorageLevel.MEMORY_AND_DISK)
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
        filled = fi.fill_means(rows, columns)
        stats: dict = {}
        if s["scale"] == "standard":
            scaler = Scaler.fit(filled, {"input": columns})
            out = scaler.transform(filled)
            stats = {"means": scaler.means, "stds": scaler.stds, "weights": scaler.weights}
        else:
            out = fi.raw_vector(filled, columns)
        definition = {k: s[k] for k in ("path", "format", "id_column", "label_column", "scale")}
        definition.update(columns=mapping, stats=stats)
        version = hashlib.sha1(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]
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
                 len(columns), s["path"], s["format"], s["scale"], version,
                 f"; labels of {s['label_column']!r} in {LABELS_TABLE}" if s["label_column"]
                 else "")
    ctx.metric("users", counts["n"])
    ctx.metric("features", len(columns))
    mlflow.set_tag("feature_set_version", version)
    mlflow.log_dict({**definition, "version": version}, "feature_set.json")
