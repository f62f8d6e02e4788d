"""report: one self-contained HTML page of the segments and tags for people who use them.

Reads gold/segment_profiles, a bounded sample of gold/user_embeddings (for the 2-D map),
gold/tag_metrics and gold/user_tags when tags were trained, and the predictive validity
rows of gold/segment_quality when evaluate measured it for the current segments, and how k
was chosen (``k_selection.json`` and ``.png`` of the segment run that fitted them). Writes
``<lake.root>/reports/persona_report.html`` and logs the same file to MLflow.
"""
from __future__ import annotations

import tempfile
from datetime import datetime, timezone

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from persona.errors import PersonaError
from persona.lake.catalog import MODELS_TABLE
from persona.privacy.suppression import MIN_SIZE, note, suppressed
from persona.report import charts
from persona.report.page import Page, SegmentCard, TagCard, render
from persona.runtime.context import StageContext
from persona.segmentation.explain import feature_label, format_value, ranked
from persona.segmentation.models import K_SELECTION_JSON, K_SELECTION_PNG
from persona.stages.embed import EMBEDDINGS_TABLE
from persona.stages.evaluate import ENGINE, OUTCOME, QUALITY_TABLE
from persona.stages.segment import PROFILES_TABLE, SEGMENTS_TABLE
from persona.stages.tag import METRICS_TABLE, TAGS_TABLE

HELP = "one HTML page with the segments and tags → <lake>/reports/ and MLflow"
REPORT = "reports/persona_report.html"
MODEL_NAMES = {"dnn": "DNN", "logreg": "logistic regression", "majority": "majority class"}
VALIDITY_NAMES = {ENGINE: "Persona segments", "rfm_segments": "RFM named segments",
                  "rfm_kmeans": "K-Means on recency, frequency, spend"}


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write ``text`` to ``path`` through Hadoop's file systems (local, HDFS, object stores)."""
    jvm = spark.sparkContext._jvm
    target = jvm.org.apache.hadoop.fs.Path(path)
    fs = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    stream = fs.create(target, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def top_features(profiles: list[dict], per_segment: int = 3, limit: int = 14) -> list[str]:
    """The features that most set some segment apart: each segment's ``per_segment``
    strongest, strongest overall first."""
    strength: dict[str, float] = {}
    for p in profiles:
        z = p["feature_z"] or {}
        for c in ranked(z, per_segment):
            strength[c] = max(strength.get(c, 0.0), abs(z[c]))
    return sorted(strength, key=lambda c: (-strength[c], c))[:limit]


def highlighted(profile: dict) -> list[tuple[str, float]]:
    """A profile's highlights, each with its standardised difference: they describe its
    ``feature_z`` features in :func:`ranked` order (see ``explain.highlights``)."""
    lines, z = profile["highlights"] or [], profile["feature_z"] or {}
    return [(line, z[c]) for line, c in zip(lines, ranked(z, len(lines)))]


def _segment_cards(profiles: list[dict]) -> list[SegmentCard]:
    cards = []
    for p in profiles:
        cards.append(SegmentCard(
            p["segment"], p["name"], p["size"], p["share"], charts.colour(p["segment"]),
            highlighted(p),
            [r.asDict() for r in p["rules"] or []], p["surrogate_recall"]))
    return cards


def _heatmap(profiles: list[dict], numeric: list[str]) -> str:
    features = top_features(profiles)
    z = np.array([[(p["feature_z"] or {}).get(c, np.nan) for c in features] for p in profiles])
    labels = [[format_value(c, p["feature_means"][c], numeric) for c in features]
              for p in profiles]
    return charts.heatmap_chart([p["name"] for p in profiles],
                                [feature_label(c) for c in features], z, labels)


def _projection(ctx: StageContext, profiles: list[dict]) -> str:
    """The embeddings of at most ``report.sample_users`` users of the segments shown,
    projected by PCA."""
    limit = ctx.config.get("report.sample_users")
    total = sum(p["size"] for p in profiles)
    shown = [p["segment"] for p in profiles]
    sample = (ctx.lake.read(EMBEDDINGS_TABLE).join(
        ctx.lake.read(SEGMENTS_TABLE).select("user_id", "segment")
        .where(F.col("segment").isin(shown)), "user_id")
        .sample(fraction=min(1.0, 1.2 * limit / max(total, 1)), seed=7)
        .select("embedding", "segment").limit(limit).collect())
    vectors = np.array([r["embedding"] for r in sample], dtype=float)
    segments = np.array([r["segment"] for r in sample])
    ctx.log.info("map of %d sampled users (of %d)", len(sample), total)
    return charts.projection_chart(charts.pca_2d(vectors), segments,
                                   {p["segment"]: p["name"] for p in profiles})


def _tag_cards(ctx: StageContext) -> tuple[list[TagCard], str | None]:
    """Cards of the trained tags and the F1 chart; none when no tags were trained."""
    if not (ctx.lake.exists(METRICS_TABLE) and ctx.lake.exists(TAGS_TABLE)):
        ctx.log.info("no tags in the lake: the report shows segments only")
        return [], None
    order = list(MODEL_NAMES)
    metrics = sorted((r.asDict() for r in ctx.lake.read(METRICS_TABLE).collect()),
                     key=lambda m: (m["tag"], order.index(m["model"]) if m["model"] in order
                                    else len(order)))
    values = {}
    for r in (ctx.lake.read(TAGS_TABLE).groupBy("tag", "value").count()
              .orderBy("tag", F.desc("count")).collect()):
        values.setdefault(r["tag"], []).append((r["value"], r["count"]))
    cards, f1 = [], {}
    for tag in dict.fromkeys(m["tag"] for m in metrics):
        rows = [m for m in metrics if m["tag"] == tag]
        by_model = {m["model"]: m for m in rows}
        first = rows[0]
        for m in rows:
            f1.setdefault(MODEL_NAMES.get(m["model"], m["model"]), []).append(m["f1"])
        matrices = {MODEL_NAMES[k]: by_model[k]["confusion"] for k in ("dnn", "logreg")
                    if k in by_model}
        shown = values.get(tag, [])
        note = (f"{first['target']} · {first['train_users']:,} users to train, "
                f"{first['validation_users']:,} to choose thresholds and stop training, "
                f"{first['test_users']:,} to test · inputs: {first['inputs']}"
                + (f" · features before {first['cutoff']}" if first["cutoff"] else ""))
        cards.append(TagCard(
            tag, first["target"],
            [{**m, "model": MODEL_NAMES.get(m["model"], m["model"])} for m in rows],
            charts.confusion_chart(matrices, first["classes"]),
            charts.values_chart([v for v, _ in shown], [c for _, c in shown]), note))
    return cards, charts.scores_chart([c.name for c in cards], f1, "F1 on test users")


def _validity(ctx: StageContext, version: str) -> list[dict]:
    """The predictive validity of segment model ``version`` and its baselines, from the
    outcome rows of gold/segment_quality (a few rows); none when evaluate did not measure
    it for these segments."""
    if not ctx.lake.exists(QUALITY_TABLE):
        return []
    values: dict[str, dict] = {}
    for r in ctx.lake.read(QUALITY_TABLE).where(
            (F.col("space") == OUTCOME) & (F.col("segment_model_version") == version)).collect():
        values.setdefault(r["method"], {})[r["metric"]] = r["value"]
    return [{"method": VALIDITY_NAMES[m], **values[m]} for m in VALIDITY_NAMES if m in values]


def _k_selection(ctx: StageContext, version: str) -> tuple[dict | None, str | None]:
    """How k was chosen for segment model ``version``, from the MLflow run that fitted it
    (its meta/models entry, kind ``segments``): the record and its picture as a data URI;
    none when k was given."""
    entry = (ctx.lake.read(MODELS_TABLE).where(
        (F.col("model_version") == version) & (F.col("kind") == "segments")).first()
             if ctx.lake.exists(MODELS_TABLE) else None)
    if entry is None:
        return None, None
    run, _ = RunsArtifactRepository.parse_runs_uri(entry["model_uri"])
    try:
        logged = {a.path for a in mlflow.artifacts.list_artifacts(run_id=run)}
    except MlflowException as exc:  # the run is not in this tracking store
        ctx.log.info("no choice of k to show: %s", exc)
        return None, None
    if K_SELECTION_PNG not in logged:
        ctx.log.info("segment model %s was fitted with a given k: no choice of k to show",
                     version)
        return None, None
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run, artifact_path=K_SELECTION_PNG,
                                                   dst_path=tmp)
        with open(path, "rb") as fh:
            picture = charts.png_data_uri(fh.read())
    record = mlflow.artifacts.load_dict(f"runs:/{run}/{K_SELECTION_JSON}")
    return {"criterion": record["criterion"], "chosen": record["best_by"][record["criterion"]],
            "best_by": record["best_by"]}, picture


def run(ctx: StageContext) -> None:
    profiles = [r.asDict() for r in ctx.lake.read(PROFILES_TABLE).orderBy("segment").collect()]
    if not profiles:
        raise PersonaError(f"{PROFILES_TABLE} is empty: run `persona segment` first")
    if "name" not in profiles[0]:
        raise PersonaError(f"{PROFILES_TABLE} has no segment names: re-run `persona segment`")
    minimum = ctx.config.get(MIN_SIZE)
    hidden = [p for p in profiles if p.get("suppressed") or suppressed(p["size"], minimum)]
    notes = [note(p["segment"], p["size"], minimum) for p in hidden]
    for line in notes:
        ctx.log.info(line)
    profiles = [p for p in profiles if p not in hidden]
    if not profiles:
        raise PersonaError(f"every segment has fewer than {MIN_SIZE}={minimum} users: "
                           f"nothing to report")
    numeric = ctx.config.get("sources.users.attributes.numeric") or []
    tags, scores = _tag_cards(ctx)
    users = sum(p["size"] for p in profiles)
    fidelity = profiles[0]["surrogate_fidelity"]
    images = {"sizes": charts.sizes_chart([p["segment"] for p in profiles],
                                          [p["name"] for p in profiles],
                                          [p["size"] for p in profiles]),
              "projection": _projection(ctx, profiles), "heatmap": _heatmap(profiles, numeric),
              "scores": scores}
    k_selection, images["k_selection"] = _k_selection(ctx, profiles[0]["model_version"])
    kpis = [("users", f"{users:,}"), ("segments", str(len(profiles))),
            ("users the segment rules explain", f"{fidelity:.0%}" if fidelity == fidelity
             else "–"), ("profile tags", str(len(tags)))]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = Page("Persona: who our users are",
                f"{users:,} users in {len(profiles)} segments · generated {now}", kpis, images,
                _segment_cards(profiles), tags, fidelity,
                f"lake {ctx.lake.root} · segment model {profiles[0]['model_version']}",
                _validity(ctx, profiles[0]["model_version"]), k_selection, notes)
    html = render(page)
    path = f"{ctx.lake.root}/{REPORT}"
    write_text(ctx.spark, path, html)
    mlflow.log_text(html, "persona_report.html")
    ctx.metric("report_kb", round(len(html) / 1024, 1))
    ctx.metric("segments", len(profiles))
    ctx.metric("tags", len(tags))
    ctx.log.info("report of %d segments and %d tags written to %s (%.0f kB)", len(profiles),
                 len(tags), path, len(html) / 1024)
