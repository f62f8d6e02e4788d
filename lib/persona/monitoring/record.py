"""What a stage measured against the models in use, written down: rows of gold/drift, and
whether the retraining policy says retraining is due (MLflow tag ``retrain_due``, one log
line per reason)."""
from __future__ import annotations

from datetime import datetime

from persona.monitoring.drift import DRIFT_COLUMNS, DRIFT_TABLE
from persona.runtime.context import StageContext


def record_drift(ctx: StageContext, rows: list[tuple[str, str, float]], now: datetime) -> None:
    """Append ``rows`` (kind, name, value) to gold/drift under this run and ``now``."""
    ctx.lake.append(ctx.spark.createDataFrame(
        [(ctx.run_id, now, kind, name, value) for kind, name, value in rows], DRIFT_COLUMNS),
        DRIFT_TABLE)


def announce(ctx: StageContext, reasons: list[str]) -> None:
    """Tag the run with whether retraining is due (and the stage's result: metric
    ``retrain_due``, 1 or 0) and log each reason."""
    ctx.set_tag("retrain_due", str(bool(reasons)).lower())
    ctx.metric("retrain_due", float(bool(reasons)))
    for reason in reasons:
        ctx.log.info("retraining due: %s", reason)
