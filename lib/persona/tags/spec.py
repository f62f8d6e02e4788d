"""The ``tags`` section of the configuration: one target per ``tags.<name>``.

A target is a users attribute (``attribute``, with ``bins`` for a numeric one) or a
behaviour label after a cut-off (``label: churn | high_value``, ``cutoff``,
``horizon_days``, ``top_share``); optional keys set the split (``test_fraction``,
``validation_fraction``, ``seed``), the inputs (``inputs: [features, embedding]``) and the
classifier (``hidden``, ``dropout``, ``learning_rate``, ``epochs``, ``patience``,
``batch_size``, ``validation_sample``, ``max_classes``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from persona.config import Config
from persona.errors import PersonaError
from persona.tags.labels import BEHAVIOURS

INPUTS = ("features", "embedding")


@dataclass
class TagSpec:
    """One target under ``tags.<name>``."""

    name: str
    attribute: str | None = None
    bins: list[float] | None = None
    label: str | None = None  # churn | high_value
    cutoff: str | None = None
    horizon_days: int = 90
    top_share: float = 0.1
    inputs: list[str] | None = None  # None: features, plus the embedding when it cannot leak
    test_fraction: float = 0.2
    validation_fraction: float = 0.2
    seed: int = 7
    max_classes: int = 20
    validation_sample: int = 20000
    classifier: dict = field(default_factory=dict)

    @property
    def binary(self) -> bool:
        return self.label is not None

    @property
    def target(self) -> str:
        """What the tag predicts, in words."""
        if self.attribute:
            banded = " band" if self.bins else ""
            return f"the user's {self.attribute}{banded} (predicted where it is unknown)"
        if self.label == "churn":
            return f"churn: no purchase in the {self.horizon_days} days after {self.cutoff}"
        return (f"high value: in the top {self.top_share:.0%} of spend in the "
                f"{self.horizon_days} days after {self.cutoff}")


def _fraction(config: Config, key: str, default: float) -> float:
    value = config.number(key, default)
    if not 0 < value < 1:
        raise PersonaError(f"configuration key {key} must be between 0 and 1, got {value}")
    return value


def tag_specs(config: Config) -> list[TagSpec]:
    """Every configured tag, checked; one clear error for the first problem found."""
    out = []
    for name, section in config.section("tags").items():
        key = f"tags.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(name)):
            raise PersonaError(f"{key}: a tag name may only have letters, digits, - and _")
        if not isinstance(section, dict):
            raise PersonaError(f"{key} must be a mapping with `attribute` or `label`")
        if bool(section.get("attribute")) == bool(section.get("label")):
            raise PersonaError(f"{key} needs exactly one of `attribute` (a users column) or "
                               f"`label` ({' or '.join(BEHAVIOURS)})")
        spec = TagSpec(name, test_fraction=_fraction(config, f"{key}.test_fraction", 0.2),
                       validation_fraction=_fraction(config, f"{key}.validation_fraction", 0.2),
                       seed=config.integer(f"{key}.seed", config.integer("train.seed", 7)),
                       max_classes=config.integer(f"{key}.max_classes", 20, minimum=2),
                       validation_sample=config.integer(f"{key}.validation_sample", 20000,
                                                        minimum=10))
        if spec.test_fraction + spec.validation_fraction >= 0.9:
            raise PersonaError(f"{key}: test_fraction + validation_fraction must leave users "
                               f"to train on (< 0.9)")
        if section.get("attribute"):
            spec.attribute = str(section["attribute"])
            bins = section.get("bins")
            if bins is not None and (not isinstance(bins, list) or len(bins) < 2 or not all(
                    isinstance(b, (int, float)) for b in bins) or sorted(bins) != bins):
                raise PersonaError(f"{key}.bins must be increasing numbers, got {bins!r}")
            spec.bins = bins
        else:
            spec.label = str(section["label"])
            if spec.label not in BEHAVIOURS:
                raise PersonaError(f"{key}.label must be one of {', '.join(BEHAVIOURS)}, "
                                   f"got {spec.label!r}")
            if not section.get("cutoff"):
                raise PersonaError(f"{key}.cutoff is missing: a {spec.label} label needs the "
                                   f"date that separates features from outcome")
            spec.cutoff = str(section["cutoff"])
            spec.horizon_days = config.integer(f"{key}.horizon_days", 90, minimum=1)
            spec.top_share = _fraction(config, f"{key}.top_share", 0.1)
        inputs = section.get("inputs")
        if inputs is not None:
            if (not isinstance(inputs, list) or not inputs
                    or not set(inputs) <= set(INPUTS)):
                raise PersonaError(f"{key}.inputs must be a non-empty list of "
                                   f"{' and '.join(INPUTS)}, got {inputs!r}")
            spec.inputs = list(inputs)
        spec.classifier = _classifier_settings(config, key)
        out.append(spec)
    return out


def _classifier_settings(config: Config, key: str) -> dict:
    hidden = config.get(f"{key}.hidden", [64, 32])
    if not isinstance(hidden, list) or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise PersonaError(f"{key}.hidden must be a list of positive integers, got {hidden!r}")
    dropout = config.number(f"{key}.dropout", 0.2)
    if not 0 <= dropout < 1:
        raise PersonaError(f"{key}.dropout must be in [0, 1), got {dropout}")
    return {"hidden": hidden, "dropout": dropout,
            "learning_rate": config.number(f"{key}.learning_rate", 0.002),
            "epochs": config.integer(f"{key}.epochs", 100, minimum=1),
            "patience": config.integer(f"{key}.patience", 8, minimum=1),
            "batch_size": config.integer(f"{key}.batch_size", 64, minimum=1),
            "threads_per_proc": config.integer("train.threads_per_proc", 1, minimum=0)}
