"""The ``tags`` section of the configuration: one target per ``tags.<name>``.

What a target accepts, and its defaults, are in :class:`persona.config.schema.Tag`.
"""
from __future__ import annotations

from dataclasses import dataclass

from persona.config import Config


@dataclass
class TagSpec:
    """One target under ``tags.<name>``."""

    name: str
    attribute: str | None
    bins: list[float] | None
    label: str | None  # churn | high_value
    cutoff: str | None
    horizon_days: int
    top_share: float
    inputs: list[str] | None  # None: features, plus the embedding when it cannot leak
    test_fraction: float
    validation_fraction: float
    seed: int
    max_classes: int
    validation_sample: int
    classifier: dict

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


def tag_specs(config: Config) -> list[TagSpec]:
    """Every configured tag (``tags.<name>``, checked when the configuration was read)."""
    train = config.get("train")
    return [TagSpec(name=name, attribute=tag.attribute, bins=tag.bins, label=tag.label,
                    cutoff=tag.cutoff, horizon_days=tag.horizon_days, top_share=tag.top_share,
                    inputs=tag.inputs, test_fraction=tag.test_fraction,
                    validation_fraction=tag.validation_fraction,
                    seed=train.seed if tag.seed is None else tag.seed,
                    max_classes=tag.max_classes, validation_sample=tag.validation_sample,
                    classifier={"hidden": tag.hidden, "dropout": tag.dropout,
                                "learning_rate": tag.learning_rate, "epochs": tag.epochs,
                                "patience": tag.patience, "batch_size": tag.batch_size,
                                "threads_per_proc": train.threads_per_proc})
            for name, tag in config.get("tags").items()]
