"""Run one stage or the whole pipeline, and tell the user what came out and where."""
from __future__ import annotations

import mlflow

from persona.config import Config
from persona.lake.tables import Lake
from persona.logs import get_logger
from persona.privacy.suppression import MIN_SIZE, note, suppressed
from persona.runtime.context import run_stage
from persona.runtime.spark import get_spark
from persona.runtime.tracking import tracking_uri, use_experiment
from persona.stages import PIPELINE, STAGES, enabled

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
