"""features: bronze tables → silver/user_features, one scaled feature row per user."""
from __future__ import annotations

import hashlib
import json

import mlflow
from pyspark import StorageLevel
from pyspark.sql import functions as F

from persona.context import StageContext
from persona.errors import PersonaError
from persona.transform import features as fx

FEATURES_TABLE = "silver/user_features"
# Columns of silver/user_features that are not feature values.
META_COLUMNS = ("user_id", "features", "feature_set_version", "as_of")


def feature_columns(df) -> list[str]:
    """The named feature columns of a user_features table, in table order."""
    return [c for c in df.columns if c not in META_COLUMNS]


def _as_of(ctx: StageContext, events):
    configured = ctx.config.get("features.as_of", None)
    if configured:
        try:
            return ctx.spark.sql(f"SELECT CAST('{configured}' AS TIMESTAMP) AS t").first()["t"]
        except Exception:  # Spark raises on a malformed literal in ANSI mode
            raise PersonaError(f"features.as_of: not a timestamp: {configured!r}") from None
    latest = events.agg(F.max("event_time").alias("t")).first()["t"]
    if latest is None:
        raise PersonaError("bronze/events is empty: nothing to build features from")
    return latest


def _groups(ctx: StageContext, events, as_of) -> dict:
    """Each enabled feature group as (DataFrame, reason skipped or None)."""
    cfg = ctx.config
    out = {"behaviour": fx.behaviour(events, as_of, list(cfg.get("features.purchase_types",
                                                                    ["purchase"])))}
    types = fx.top_values(events, "event_type", cfg.integer("features.max_event_types", 12))
    out["event_mix"] = fx.event_mix(events, types)
    categories = fx.top_values(events, "category", cfg.integer("features.top_categories", 12))
    if categories:
        out["category"] = fx.category_affinity(events, categories)
    else:
        ctx.log.info("category group skipped: events have no category values")
    out["time"] = fx.time_profile(events)

    users_conf = cfg.get("sources.users", None)
    if users_conf and ctx.lake.exists("bronze/users"):
        attrs = users_conf.get("attributes") or {}
        users = ctx.lake.read("bronze/users")
        max_levels = cfg.integer("features.max_levels", 12)
        categorical = {a: fx.top_values(users, a, max_levels) for a in attrs.get("categorical") or []}
        out["profile"] = fx.profile_attributes(users, categorical, list(attrs.get("numeric") or []))
    else:
        ctx.log.info("profile group skipped: no users source configured")

    if cfg.get("sources.content", None) and ctx.lake.exists("bronze/content"):
        content = ctx.lake.read("bronze/content").where(F.col("event_time") <= F.lit(as_of))
        out["content"] = fx.content_stats(content)
    else:
        ctx.log.info("content group skipped: no content source configured")
    return out


def _input_versions(ctx: StageContext) -> dict[str, int]:
    return {t: ctx.lake.version(t) for t in ("bronze/events", "bronze/users", "bronze/content")
            if ctx.lake.exists(t)}


def run(ctx: StageContext) -> None:
    events_all = ctx.lake.read("bronze/events")
    as_of = _as_of(ctx, events_all)
    events = events_all.where(F.col("event_time") <= F.lit(as_of))
    groups = _groups(ctx, events, as_of)
    base, *rest = groups.values()
    fused = fx.fuse(base, rest).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        users = fused.count()
        if users == 0:
            raise PersonaError(f"no events at or before features.as_of={as_of}")
        group_columns = {name: [c for c in df.columns if c != "user_id"]
                         for name, df in groups.items()}
        scaler = fx.Scaler.fit(fused, group_columns)
        for column in scaler.constant_columns():
            ctx.log.info("feature %s is constant (%.3g) for every user", column,
                         scaler.means[column])
        definition = {
            "as_of": str(as_of),
            "groups": group_columns,
            "inputs": _input_versions(ctx),
            "purchase_types": ctx.config.get("features.purchase_types", ["purchase"]),
        }
        version = hashlib.sha1(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]
        out = (scaler.transform(fused)
               .withColumn("feature_set_version", F.lit(version))
               .withColumn("as_of", F.lit(as_of).cast("timestamp")))
        ctx.lake.overwrite(out, FEATURES_TABLE)
    finally:
        fused.unpersist()
    ctx.log.info("%d users, %d features in %d groups (%s), as_of %s, feature set %s",
                 users, len(scaler.columns), len(group_columns), ", ".join(group_columns),
                 as_of, version)
    ctx.metric("users", users)
    ctx.metric("features", len(scaler.columns))
    ctx.metric("constant_features", len(scaler.constant_columns()))
    mlflow.set_tag("feature_set_version", version)
    mlflow.log_dict({**definition, "version": version, "means": scaler.means,
                     "stds": scaler.stds, "weights": scaler.weights}, "feature_set.json")
