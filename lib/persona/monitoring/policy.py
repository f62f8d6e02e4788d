"""The retraining policy: from drift measures and the models' age, whether retraining is due
(``retrain.*``), and why, in words."""
from __future__ import annotations

from dataclasses import dataclass, field

from persona.config.schema import Retrain


@dataclass
class Measures:
    """What a run measured against the models in use."""

    psi: dict[str, float] = field(default_factory=dict)  # feature → PSI
    share_change: dict[int, float] = field(default_factory=dict)  # segment → share change
    model_age_days: float | None = None


def retrain_reasons(measures: Measures, retrain: Retrain) -> list[str]:
    """Why retraining is due under the ``retrain`` settings, [] when it is not."""
    reasons = []
    if measures.psi:
        drifted = sorted(n for n, v in measures.psi.items() if v > retrain.max_psi)
        share = len(drifted) / len(measures.psi)
        if share > retrain.max_drifted_share:
            reasons.append(f"{len(drifted)} of {len(measures.psi)} features drifted (PSI > "
                           f"{retrain.max_psi:g}: {_first(drifted)}), more than "
                           f"retrain.max_drifted_share {retrain.max_drifted_share:g}")
    moved = sorted((i for i, v in measures.share_change.items()
                    if abs(v) > retrain.max_share_change),
                   key=lambda i: -abs(measures.share_change[i]))
    if moved:
        reasons.append(f"the share of segment {_first([str(i) for i in moved])} moved by more "
                       f"than retrain.max_share_change {retrain.max_share_change:g} (largest "
                       f"{measures.share_change[moved[0]]:+.3f})")
    age = retrain.max_age_days
    if age is not None and measures.model_age_days is not None and measures.model_age_days > age:
        reasons.append(f"the models are {measures.model_age_days:.0f} days old, more than "
                       f"retrain.max_age_days {age}")
    return reasons


def _first(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
