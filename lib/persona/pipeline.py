"""Run one stage, the whole pipeline or the daily update, and tell the user what came out
and where."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import mlflow
from pyspark.sql import functions as F

from persona.config import Config
from persona.errors import PersonaError
from persona.features.state import load_state
from persona.lake.catalog import current_encoder, registry_name
from persona.lake.tables import Lake
from persona.logs import get_logger
from persona.privacy.suppression import MIN_SIZE, note, suppressed
from persona.runtime.context import run_stage
from persona.runtime.spark import get_spark
from persona.runtime.tracking import tracking_uri, use_experiment
from persona.segmentation.manifold import manifold_method
from persona.segmentation.models import segment_method
from persona.stages import PIPELINE, STAGES, embed, enabled, features, segment, train

log = get_logger("pipeline")


def run_single(stage: str, config: Config) -> dict:
    return run_stage(stage, STAGES[stage].run, config)


def run_pipeline(config: Config) -> dict[str, dict]:
    """Every enabled stage in order, each a nested MLflow run under one pipeline run."""
    results: dict[str, dict] = {}
    with mlflow.start_run(experiment_id=use_experiment(config), run_name="pipeline") as parent:
        mlflow.set_tag("persona.config", config.path or "")
        log.info("MLflow pipeline run %s", parent.info.run_id)
        for name, module in PIPELINE.items():
            if not enabled(module, config):
                log.info("%s skipped: not configured", name)
                continue
            results[name] = run_stage(name, module.run, config)
            mlflow.log_metric(f"{name}_wall_seconds", results[name]["wall_seconds"])
    print(summary(config, results))
    return results


# One row per update that ran: what it read and which models it used (the next update with
# the same inputs and models has nothing to do), and what it found.
UPDATES_TABLE = "meta/updates"
# The stages that (re)train the models, in order: an update's retraining, or its first run.
TRAINING = {"features": features.run, "train": train.run, "embed": embed.run,
            "segment": segment.run}


def run_update(config: Config) -> dict[str, dict]:
    """`persona update`: features, embeddings and segments brought up to the latest events
    with the models in use (the registry alias on the encoder and the K-Means model, the
    encoder's feature set frozen), nothing trained, only changed rows rewritten. Drift and
    the retraining policy are measured by the embed and segment stages; with
    ``retrain.auto`` a due retraining runs at once. With no models in use yet, the update
    trains them. Nothing new since the last update: nothing is written."""
    method, manifold = segment_method(config), manifold_method(config)
    if method != "kmeans" or manifold != "none":
        raise PersonaError(f"persona update assigns with the K-Means model in use; "
                           f"segment.method={method}, segment.manifold={manifold} fit new "
                           "segments on every run: use `persona run`")
    lake = Lake(get_spark(config), config.path_of("lake.root"))
    with mlflow.start_run(experiment_id=use_experiment(config), run_name="update") as parent:
        mlflow.set_tag("persona.config", config.path or "")
        log.info("MLflow update run %s", parent.info.run_id)
        pinned = _models_in_use(config, lake)
        inputs = _inputs(lake, pinned) if pinned else None
        if pinned is None:
            log.info("no models in use yet: this update trains them (%s)", ", ".join(TRAINING))
            results, due, retrained = _train(config), True, True
        else:
            brought = _bring_forward(config, lake, pinned, inputs)
            if brought is None:
                mlflow.set_tag("nothing_new", "true")
                return {}
            results, due = brought
            retrained = bool(due and config.get("retrain.auto"))
            if retrained:
                log.info("retraining is due and retrain.auto is on: retraining (%s)",
                         ", ".join(TRAINING))
                results.update({f"retrain_{n}": r for n, r in _train(config).items()})
            elif due:
                log.info("retraining is due: run `persona run`, or set retrain.auto: true")
        mlflow.set_tags({"retrain_due": str(due).lower(), "retrained": str(retrained).lower()})
        if retrained:  # new models in use; an update writes no bronze table
            inputs = _inputs(lake, _models_in_use(config, lake))
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        lake.append(lake.spark.createDataFrame(
            [(parent.info.run_id, now, inputs, due, retrained)],
            "mlflow_run_id string, at timestamp, inputs string, retrain_due boolean, "
            "retrained boolean"), UPDATES_TABLE)
    print(update_summary(results, due, retrained))
    return results


def _bring_forward(config: Config, lake: Lake, pinned: "_Pinned", inputs: str
                   ) -> tuple[dict[str, dict], bool] | None:
    """The features (frozen state), embed and segment stages with the models in use: their
    results and whether retraining is due; None when nothing is new since the last update
    (the same ``inputs``, :func:`_inputs`, and no retraining left waiting for
    ``retrain.auto``)."""
    last = _last_update(lake)
    same = last is not None and last["inputs"] == inputs
    waiting = same and last["retrain_due"] and not last["retrained"]
    if same and not (waiting and config.get("retrain.auto")):
        log.info("nothing new since the update of %s: no table written", last["at"])
        return None
    if waiting:
        log.info("retraining was due at the update of %s, with nothing new since", last["at"])
        return {}, True
    state = load_state(lake, pinned.feature_set)
    if state is None:
        raise PersonaError(f"feature set {pinned.feature_set} of the encoder in use has no "
                           "saved state in meta/feature_sets: run `persona run` to build and "
                           "train it again")
    results = {
        "features": run_stage("features", lambda ctx: features.refresh(ctx, state),
                              pinned.config),
        "embed": run_stage("embed", embed.run, pinned.config),
        "segment": run_stage("segment", segment.run, pinned.config),
    }
    return results, any(r.get("retrain_due") for r in results.values())


class _Pinned:
    """The models in use, and the configuration that makes embed and segment use them."""

    def __init__(self, config: Config, encoder: str, segments: str, feature_set: str):
        self.encoder, self.segments, self.feature_set = encoder, segments, feature_set
        self.config = copy.deepcopy(config)
        self.config.set("model.uri", encoder)
        self.config.set("segment.model_uri", segments)


def _models_in_use(config: Config, lake: Lake) -> _Pinned | None:
    """The encoder and K-Means model in use: ``model.uri`` and ``segment.model_uri`` when
    set, else the versions under the registry alias; None when there are none yet."""
    from mlflow.exceptions import MlflowException

    alias = registry_name(config, "alias")
    uris = {}
    for kind, key in (("encoder", "model.uri"), ("segments", "segment.model_uri")):
        uri = config.get(key)
        if not uri:
            name = registry_name(config, kind)
            try:
                found = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
            except MlflowException:
                return None
            uri = f"models:/{name}/{found.version}"
        uris[kind] = uri
    ref = current_encoder(lake, uris["encoder"])
    if not ref.feature_set_version:
        raise PersonaError(f"the encoder in use ({uris['encoder']}) does not name the feature "
                           "set it was trained on: run `persona run` to train it again")
    return _Pinned(config, uris["encoder"], uris["segments"], ref.feature_set_version)


def _inputs(lake: Lake, pinned: _Pinned) -> str:
    """What an update reads: the bronze tables' versions and the models in use, as JSON."""
    versions = {t: lake.version(t) for t in ("bronze/events", "bronze/users", "bronze/content")
                if lake.exists(t)}
    return json.dumps({"bronze": versions, "encoder": pinned.encoder,
                       "segments": pinned.segments, "feature_set": pinned.feature_set,
                       "as_of": pinned.config.get("features.as_of")}, sort_keys=True)


def _last_update(lake: Lake):
    table = lake.read_if_exists(UPDATES_TABLE)
    return None if table is None else table.orderBy(F.desc("at")).first()


def _train(config: Config) -> dict[str, dict]:
    """The training stages, each its own nested run, on the configuration as given."""
    return {name: run_stage(name, fn, config) for name, fn in TRAINING.items()}


def update_summary(results: dict[str, dict], due: bool, retrained: bool) -> str:
    """What an update did: users brought forward, segment changes, whether it retrained."""
    lines = [""]
    if "train" in results:
        lines.append("Persona update: no models were in use; trained them")
    elif "features" in results:
        f, s = results["features"], results.get("segment", {})
        lines.append(f"Persona update: {f.get('users', 0):.0f} users' features brought forward "
                     f"({f.get('rows_updated', 0):.0f} changed, {f.get('rows_inserted', 0):.0f} "
                     f"new, {f.get('rows_deleted', 0):.0f} gone); "
                     f"{s.get('rows_updated', 0):.0f} users changed segment, "
                     f"{s.get('rows_inserted', 0):.0f} new users assigned")
    lines.append("  retraining: " + ("done" if retrained else "due: run `persona run` or set "
                                     "retrain.auto: true" if due else "not due"))
    times = {name: res["wall_seconds"] for name, res in results.items()}
    lines += [f"  stage times: {', '.join(f'{n} {t:.0f}s' for n, t in times.items())}", ""]
    return "\n".join(lines)


def summary(config: Config, results: dict[str, dict]) -> str:
    """The segments (size, what distinguishes each) and where to look next."""
    lake = Lake(get_spark(config), config.path_of("lake.root"))
    profiles = [r.asDict() for r in lake.read("gold/segment_profiles").orderBy("segment")
                .select("segment", "size", "share", "description").collect()]
    times = {name: res["wall_seconds"] for name, res in results.items()}
    return summary_text(profiles, times, lake.root, tracking_uri(config),
                        config.get(MIN_SIZE))


def mlflow_hint(uri: str) -> str:
    """Where to open the runs: the local UI (``make mlflow-ui``) for a local SQLite or file
    store, else the tracking server itself."""
    if uri.startswith(("sqlite:", "file:")):
        return f"make mlflow-ui  → http://127.0.0.1:5000  ({uri})"
    return uri


def summary_text(profiles: list[dict], times: dict[str, float], lake_root: str,
                 uri: str, minimum: int) -> str:
    """The run summary: one line per segment that has users (``profiles``: rows of
    gold/segment_profiles; those below ``minimum`` users say only that they are not
    shown), the stage times, the lake and the MLflow runs."""
    present = [p for p in profiles if p["size"] > 0]
    total = sum(p["size"] for p in present)
    lines = ["", f"Persona: {total} users in {len(present)} segments", ""]
    for p in present:
        if suppressed(p["size"], minimum):
            lines.append(f"  {note(p['segment'], p['size'], minimum)}")
            continue
        lines.append(f"  segment {p['segment']:>2}  {p['size']:>8} users ({p['share']:6.1%})  "
                     f"{p['description']}")
    lines += [
        "",
        f"  stage times: {', '.join(f'{name} {s:.0f}s' for name, s in times.items())}",
        f"  lake:        {lake_root}  (gold/user_segments, gold/segment_profiles, ...)",
        f"  MLflow:      {mlflow_hint(uri)}",
        "",
    ]
    return "\n".join(lines)
