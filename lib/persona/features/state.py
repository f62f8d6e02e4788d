"""What a features build learns from the data, kept so that a later build makes vectors that
mean the same thing: ``persona update`` brings the features forward with the state of the
feature set the encoder in use was trained on, and fits nothing.

meta/feature_sets holds one row per feature set (its version and this state as JSON); the
Word2Vec model of its text group is saved beside it, as an MLlib model, under
meta/feature_set_models/<version>/text.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from pyspark.sql import functions as F

from persona.features.build import LinearModels, Scaler
from persona.lake.tables import Lake

STATES_TABLE = "meta/feature_sets"
MODELS_FOLDER = "meta/feature_set_models"


@dataclass
class FeatureState:
    """Everything a build fitted. Empty while a build fits it; ``version`` is set when the
    build is done (or the state is loaded), and from then on it is applied, not fitted."""

    version: str = ""
    groups: dict[str, list[str]] = field(default_factory=dict)  # named columns per group
    levels: dict[str, list[str]] = field(default_factory=dict)  # event_type, category, channel
    profile_levels: dict[str, list[str]] = field(default_factory=dict)  # attribute → levels
    profile_means: dict[str, float] = field(default_factory=dict)  # numeric attribute → fill
    means: dict[str, float] = field(default_factory=dict)  # column → fill of absent levels
    imputation: LinearModels | None = None
    outlook: LinearModels | None = None
    scaler: Scaler | None = None
    sequence: dict | None = None  # steps, event_types, categories, weight
    text_model: object = None  # Word2VecModel of the text group

    @property
    def frozen(self) -> bool:
        return bool(self.version)

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "text_model"}
        for name in ("imputation", "outlook", "scaler"):
            if data[name] is not None:
                data[name] = asdict(data[name])
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FeatureState":
        data = json.loads(text)
        for name in ("imputation", "outlook"):
            if data[name] is not None:
                fit = data[name]
                data[name] = LinearModels(fit["predictors"], {
                    column: (intercept, weights)
                    for column, (intercept, weights) in fit["models"].items()}, fit["r2"])
        data["scaler"] = Scaler(**data["scaler"])
        return cls(**data)


def _model_path(lake: Lake, version: str) -> str:
    return lake.path(f"{MODELS_FOLDER}/{version}/text")


def save_state(lake: Lake, state: FeatureState) -> None:
    """Keep ``state`` under its version (a re-run of the same build replaces it)."""
    row = lake.spark.createDataFrame([(state.version, state.to_json())],
                                     "feature_set_version string, state string")
    lake.replace_where(row.withColumn("saved_at", F.current_timestamp()), STATES_TABLE,
                       f"feature_set_version = '{state.version}'")
    if state.text_model is not None:
        state.text_model.write().overwrite().save(_model_path(lake, state.version))


def load_state(lake: Lake, version: str) -> FeatureState | None:
    """The state of feature set ``version``, None when the lake does not keep it."""
    table = lake.read_if_exists(STATES_TABLE)
    row = None if table is None else (
        table.where(F.col("feature_set_version") == version).select("state").first())
    if row is None:
        return None
    state = FeatureState.from_json(row["state"])
    if "text" in state.groups:
        from pyspark.ml.feature import Word2VecModel

        state.text_model = Word2VecModel.load(_model_path(lake, version))
    return state
