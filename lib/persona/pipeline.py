"""Run one stage or the whole pipeline, and tell the user what came out and where."""
from __future__ import annotations

import mlflow

from persona.config import Config
from persona.lake.tables import Lake
from persona.logs import get_logger
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
    rows = lake.read("gold/segment_profiles").orderBy("segment").collect()
    total = sum(r["size"] for r in rows)
    lines = ["", f"Persona: {total} users in {len(rows)} segments", ""]
    for r in rows:
        lines.append(f"  segment {r['segment']:>2}  {r['size']:>8} users ({r['share']:6.1%})  "
                     f"{r['description']}")
    times = ", ".join(f"{name} {res['wall_seconds']:.0f}s" for name, res in results.items())
    lines += [
        "",
        f"  stage times: {times}",
        f"  lake:        {lake.root}  (gold/user_segments, gold/segment_profiles, ...)",
        f"  MLflow:      make mlflow-ui  → http://127.0.0.1:5000  ({tracking_uri(config)})",
        "",
    ]
    return "\n".join(lines)
