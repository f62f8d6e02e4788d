"""Every configuration key: its type, its default (written here only) and its meaning.

``docs/configuration.md`` is generated from this module (``python -m persona.config.docs``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from persona.config.fields import section, setting
from persona.errors import PersonaError
from persona.segmentation.metrics import CRITERIA

# Values some keys choose from.
SOURCE_FORMATS = ("csv", "json", "parquet", "delta")
INGEST_MODES = ("incremental", "full")
INPUT_FORMATS = ("parquet", "delta", "csv")
INPUT_SCALES = ("auto", "standard", "range", "none")
GROUPS = ("behaviour", "windows", "diversity", "event_mix", "category", "channel", "time",
          "outlook", "items", "profile", "content", "text", "sequence")
IMPUTE_METHODS = ("regression", "mean")
SEQUENCE_ENCODERS = ("gru", "conv", "dense")
SEGMENT_METHODS = ("kmeans", "gmm", "dec", "idec")
MANIFOLDS = ("none", "umap")
K_CRITERIA = tuple(CRITERIA)
COVARIANCES = ("tied", "full", "diag", "spherical")
DEC_OPTIMIZERS = ("adam", "sgd")
TAG_LABELS = ("churn", "high_value")
TAG_INPUTS = ("features", "embedding")

_POSITIVE_INTS = (lambda v: all(x > 0 for x in v), "a list of positive integers")
_OPEN_FRACTION = (lambda v: 0 < v < 1, "between 0 and 1")
_NAME = (bool, "a non-empty name")


def _increasing(values: list) -> bool:
    return len(values) >= 2 and sorted(values) == values


# --------------------------------------------------------------------------- lake, spark


@dataclass
class Lake:
    root: Optional[str] = setting(None, "folder or object-store URI of the lake (required by "
                                        "every stage)")


@dataclass
class Spark:
    master: str = setting("local[*]", "Spark master when persona starts the session (ignored "
                                      "under spark-submit)")
    app_name: str = setting("persona", "Spark application name")
    log_level: str = setting("ERROR", "Spark's log level")
    conf: dict[str, Any] = setting({}, "Spark settings (`spark.conf.<spark key>`), for what "
                                       "spark-submit left unset")


# --------------------------------------------------------------------------- ingest


@dataclass
class Ingest:
    mode: Literal[INGEST_MODES] = setting(
        "incremental", "incremental: append only the files that are new since the last ingest "
                       "(a changed file or source setting rebuilds that source); full: rebuild "
                       "bronze and quarantine from every file")


# --------------------------------------------------------------------------- sources


@dataclass
class Rule:
    reason: str = setting("", "the quarantine reason written for the rows it rejects",
                          check=_NAME)
    when: str = setting("", "SQL predicate over the raw columns", check=_NAME)


@dataclass
class Attributes:
    categorical: list[str] = setting([], "categorical profile attributes (columns of users)")
    numeric: list[str] = setting([], "numeric profile attributes (columns of users)")


@dataclass
class Source:
    path: Optional[str] = setting(None, "a file, a folder or a glob (required)")
    format: Literal[SOURCE_FORMATS] = setting("csv", "how the files are read")
    options: dict[str, Any] = setting({}, "options of Spark's reader (csv: header true "
                                          "unless set)")
    timestamp_format: Optional[str] = setting(None, "Spark datetime pattern of timestamps "
                                                    "(default: Spark's own parsing)")
    columns: dict[str, Any] = setting(
        {}, "canonical name: your column, or {expr: SQL expression}; canonical columns not "
            "mapped are taken from a column of the same name when there is one")
    reject: list[Rule] = setting([], "your own quarantine rules: [{reason, when}]")
    pii: list[str] = setting([], "personal columns dropped at ingest (e.g. [email, name, "
                                 "phone]): they never reach the lake")
    pii_hashed: list[str] = setting([], "personal columns kept as a keyed hash (HMAC-SHA256 "
                                        "with privacy's key), e.g. to join on")
    attributes: Attributes = section(Attributes, "profile attributes (users only)")

    def check(self, path: str) -> None:
        if not self.path:
            raise PersonaError(f"{path}.path is missing")
        for canonical, mapped in self.columns.items():
            if not (isinstance(mapped, str) or (isinstance(mapped, dict)
                                                and set(mapped) == {"expr"})):
                raise PersonaError(f"{path}.columns.{canonical}: expected a column name or "
                                   f"{{expr: <SQL expression>}}, got {mapped!r}")


@dataclass
class Sources:
    events: Optional[Source] = setting(None, "behaviour events (required by ingest)")
    users: Optional[Source] = setting(None, "profile attributes, one row per user")
    content: Optional[Source] = setting(None, "reviews or posts (user_id, event_time, text, "
                                              "rating)")


# --------------------------------------------------------------------------- features


@dataclass
class FeatureInput:
    path: Optional[str] = setting(None, "a ready-made feature table to use instead of "
                                        "ingest and feature engineering")
    format: Literal[INPUT_FORMATS] = setting("parquet", "its format")
    options: dict[str, Any] = setting({}, "options of Spark's reader")
    id_column: Optional[str] = setting(None, "the column that identifies each user "
                                             "(required with path)")
    label_column: Optional[str] = setting(None, "a column of labels, written to "
                                                "silver/user_labels")
    columns: Optional[list[str]] = setting(
        None, "the feature columns (default: every numeric column but the id and label)",
        check=(bool, "a non-empty list of column names"),
        expect="a non-empty list of column names")
    scale: Literal[INPUT_SCALES] = setting(
        "auto", "auto: range when every column is a non-negative value on one shared scale "
        "(pixels, shares, one-hot), else standard; standard: z-scores; range: divided by the "
        "largest value of any column; none: as they are")

    def check(self, path: str) -> None:
        if self.path and not self.id_column:
            raise PersonaError(f"{path}.id_column is missing: name the column that "
                               f"identifies each user")


@dataclass
class Features:
    groups: list[Literal[GROUPS]] = setting(
        list(GROUPS), "the feature groups to build (each skipped, with the reason logged, "
                      "when the data lacks it)",
        check=(lambda v: "behaviour" in v, "a list of feature groups including behaviour"))
    group_weights: dict[str, float] = setting(
        {"outlook": 2.0}, "a multiplier per group on top of the equal-variance weighting, "
                          "e.g. {text: 0.5}; a group not named keeps its default (outlook 2, "
                          "which segments best by next-period spend and churn on Online "
                          "Retail, docs/results.md; the others 1)",
        check=(lambda v: set(v) <= set(GROUPS) and all(w >= 0 for w in v.values()),
               f"a mapping of groups ({', '.join(GROUPS)}) to numbers >= 0"),
        expect=f"a mapping of groups ({', '.join(GROUPS)}) to numbers >= 0")
    as_of: Optional[str] = setting(None, "build only from events at or before this time "
                                         "(default: the latest event)")
    input_versions: dict[str, int] = setting(
        {}, "Delta versions of bronze tables to rebuild a past feature set, e.g. "
            "{bronze/events: 3}",
        expect="a mapping of tables to Delta versions, e.g. {bronze/events: 3}")
    outlook_days: int = setting(90, "the outlook group: each user's expected log spend and "
                                    "chance of buying in the next this many days, learned "
                                    "from the events one such period before as_of",
                                minimum=1)
    windows: list[int] = setting([7, 30, 90], "trailing windows (days) for counts, purchases "
                                              "and spend",
                                 check=(lambda v: v and all(x > 0 for x in v),
                                        "positive day counts"))
    impute: Literal[IMPUTE_METHODS] = setting(
        "regression", "a user's absent rating and text vector: predicted from the user's "
                      "other columns (regression) or the population's mean (mean)")
    text_vector_size: int = setting(16, "Word2Vec size for review text", minimum=1)
    item_factors: int = setting(8, "the items group: factors per user of an implicit ALS on "
                                   "the user x item interaction counts", minimum=1)
    seed: int = setting(7, "seed of the Word2Vec and ALS fits")
    sequence_length: int = setting(20, "events per user in the sequence group", minimum=1)
    purchase_types: list[str] = setting(["purchase"], "event types whose amount counts as "
                                                      "spend")
    top_categories: int = setting(12, "categories in the category affinity (the most "
                                      "frequent)", minimum=0)
    max_event_types: int = setting(12, "event types in the event-type mix and the sequence",
                                   minimum=0)
    max_channels: int = setting(12, "channels in the channel mix (the most frequent)",
                                minimum=1)
    max_levels: int = setting(12, "levels kept per categorical profile attribute", minimum=0)
    max_constant_share: float = setting(0.5, "stop when more than this share of the columns "
                                             "is constant (a broken mapping)", minimum=0)
    input: FeatureInput = section(FeatureInput, "bring-your-own features")


# --------------------------------------------------------------------------- train


@dataclass
class TrainPrivacy:
    noise_multiplier: Optional[float] = setting(
        None, "DP-SGD: the std of the Gaussian noise on each batch's summed clipped "
              "gradients, in units of l2_norm_clip (default: no differential privacy; "
              "docs/privacy.md)",
        check=(lambda v: v > 0, "> 0 (0 would add no noise: no privacy)"))
    l2_norm_clip: float = setting(1.0, "DP-SGD: each user's gradient is clipped to this L2 "
                                       "norm", check=(lambda v: v > 0, "> 0"))
    delta: Optional[float] = setting(None, "the delta of the (epsilon, delta) reported "
                                           "(default and most: 1 / users)",
                                     check=_OPEN_FRACTION)


@dataclass
class Train:
    num_proc: int = setting(2, "Horovod ranks (on a cluster, one per executor core or GPU)",
                            minimum=1)
    threads_per_proc: int = setting(1, "TensorFlow threads per rank (0: TensorFlow decides)",
                                    minimum=0)
    epochs: int = setting(30, "training epochs", minimum=1)
    batch_size: int = setting(128, "mini-batch size per rank", minimum=1)
    learning_rate: float = setting(0.002, "Adam's learning rate (scaled by the number of "
                                          "ranks)", check=(lambda v: v > 0, "> 0"))
    hidden: list[int] = setting([], "dense encoder layers (mirrored in the decoder); []: a "
                                    "linear projection to the latent layer",
                                check=_POSITIVE_INTS)
    latent_dim: int = setting(8, "embedding size", minimum=1)
    noise: float = setting(0.1, "std of the Gaussian input noise (denoising)", minimum=0)
    sequence_encoder: Literal[SEQUENCE_ENCODERS] = setting(
        "gru", "branch reading the event sequence: gru, conv (1-D convolution) or dense "
               "(no branch)")
    sequence_units: int = setting(16, "width of the sequence branch", minimum=1)
    seed: int = setting(7, "seed of the initial weights and the input noise")
    petastorm_cache: Optional[str] = setting(None, "where Petastorm materialises the training "
                                                   "data (default: <lake.root>/_petastorm)")
    privacy: TrainPrivacy = section(TrainPrivacy, "differentially private training (DP-SGD)")


# --------------------------------------------------------------------------- segment


@dataclass
class Gmm:
    covariance: Literal[COVARIANCES] = setting("tied", "tied: one covariance shared by all "
                                                       "segments; or full, diag, spherical")
    max_iter: int = setting(300, "EM iterations per start", minimum=1)
    sample: int = setting(100_000, "users it is fitted on (on the driver)", minimum=10)


@dataclass
class Umap:
    n_components: int = setting(10, "dimensions of the manifold", minimum=1)
    n_neighbors: int = setting(10, "neighbours of each point", minimum=2)
    min_dist: float = setting(0.0, "how tightly points may pack",
                              check=(lambda v: 0 <= v <= 1, "in [0, 1]"))
    sample: int = setting(50_000, "users the manifold is learned from (on the driver)",
                          minimum=10)


@dataclass
class Dec:
    alpha: float = setting(1.0, "degrees of freedom of the Student's t kernel",
                           check=(lambda v: v > 0, "> 0"))
    gamma: float = setting(0.1, "IDEC: weight of the clustering loss beside the "
                                "reconstruction", minimum=0)
    optimizer: Literal[DEC_OPTIMIZERS] = setting("adam", "adam, or sgd (momentum 0.9)")
    learning_rate: float = setting(0.001, "learning rate of the refinement",
                                   check=(lambda v: v > 0, "> 0"))
    batch_size: int = setting(256, "mini-batch size per rank", minimum=1)
    update_interval: int = setting(140, "steps between two recomputations of the target "
                                        "distribution", minimum=1)
    max_steps: int = setting(10_000, "most training steps", minimum=0)
    tol: float = setting(0.001, "stop when this share of users or fewer changed segment",
                         check=(lambda v: 0 <= v < 1, "in [0, 1)"))
    decoder_epochs: int = setting(10, "IDEC: epochs fitting a decoder to the frozen encoder "
                                      "first", minimum=0)


@dataclass
class Segment:
    k: Union[int, Literal["auto"]] = setting(
        "auto", "the number of segments, or auto: the best k over k_range by k_criterion",
        check=(lambda v: v == "auto" or v >= 2, "an integer >= 2 or auto"))
    k_range: list[int] = setting([2, 10], "[min, max] k tried by auto",
                                 check=(lambda v: len(v) == 2 and 2 <= v[0] <= v[1],
                                        "[min, max] with 2 <= min <= max"))
    k_criterion: Literal[K_CRITERIA] = setting(
        "elbow", "how auto chooses k (every criterion is computed, logged and plotted): "
                 "elbow, the knee of the within-segment sum of squares (Kneedle; silhouette "
                 "when fewer than 3 k are tried or the curve has no knee); the best "
                 "silhouette, Davies-Bouldin or Calinski-Harabasz; stability, the largest k "
                 "stable up to it (see min_stability). docs/results.md compares them")
    method: Literal[SEGMENT_METHODS] = setting(
        "kmeans", "kmeans; gmm: a Gaussian mixture; dec, idec: refine encoder and centres "
                  "with the clustering loss")
    manifold: Literal[MANIFOLDS] = setting("none", "umap: cluster the UMAP manifold of the "
                                                   "embeddings")
    n_init: int = setting(5, "K-Means (or EM) starts per fit, the best kept", minimum=1)
    seed: int = setting(7, "seed of the fits and samples")
    max_iter: int = setting(50, "K-Means iterations per start", minimum=1)
    silhouette_sample: int = setting(
        20_000, "users sampled to score each k (silhouette), and on whom K-Means is fitted "
                "for each k before the chosen k is fitted over every user", minimum=100)
    stability_runs: int = setting(
        3, "bootstrap refits per k measuring stability on the driver, on at most "
           "silhouette_sample users (0: not measured, and stability cannot choose k)",
        minimum=0)
    min_stability: float = setting(
        0.8, "stability chooses the largest k whose mean adjusted Rand index with its "
             "bootstrap refits, and that of every smaller k, is at least this (when the "
             "smallest k falls short: the most stable k)",
        check=(lambda v: 0 < v <= 1, "in (0, 1]"))
    surrogate_depth: int = setting(3, "depth of the decision tree that explains the "
                                      "segments", minimum=1)
    surrogate_users: int = setting(
        20_000, "users the decision tree that explains the segments learns from at most (a "
                "sample of the four fifths not held out to measure its fidelity)", minimum=10)
    min_overlap: float = setting(
        0.5, "a refit's segment keeps a previous segment's id when their shared users are at "
             "least this share of the smaller of the two (docs/segments.md)",
        check=(lambda v: 0 < v <= 1, "in (0, 1]"))
    model_uri: Optional[str] = setting(None, "a registered K-Means model to assign with "
                                             "instead of fitting")
    gmm: Gmm = section(Gmm, "the Gaussian mixture of method: gmm")
    umap: Umap = section(Umap, "the manifold of manifold: umap")
    dec: Dec = section(Dec, "the refinement of method: dec or idec")


# --------------------------------------------------------------------------- the rest


@dataclass
class Model:
    uri: Optional[str] = setting(None, "the encoder embed uses: models:/..., runs:/... or a "
                                       "folder (default: the latest trained)")


@dataclass
class Registry:
    encoder: str = setting("persona-encoder", "registered model name of the encoder",
                           check=_NAME)
    segments: str = setting("persona-kmeans", "registered model name of the K-Means model",
                            check=_NAME)
    alias: str = setting("champion", "the alias on the versions in use", check=_NAME)


@dataclass
class Mlflow:
    tracking_uri: str = setting("sqlite:///mlflow.db", "where runs go (a relative SQLite path "
                                                       "is taken from the working directory)")
    experiment: str = setting("persona", "experiment name", check=_NAME)
    artifact_location: Optional[str] = setting(None, "artifact root of a new experiment "
                                                     "(default: the server's)")


@dataclass
class Truth:
    path: Optional[str] = setting(None, "known segments to score against (default: "
                                        "silver/user_labels)")
    format: Literal[SOURCE_FORMATS] = setting("csv", "its format")
    id_column: str = setting("user_id", "its user column", check=_NAME)
    label_column: str = setting("segment", "its label column", check=_NAME)


@dataclass
class Outcome:
    horizon_days: Optional[int] = setting(
        None, "days after the cut-off whose spend and churn the segments should explain "
              "(default: predictive validity not measured)", minimum=1)
    cutoff: Optional[str] = setting(None, "the cut-off date (default: features.as_of)")


@dataclass
class Evaluate:
    sample: int = setting(10_000, "users sampled for the internal metrics", minimum=100)
    stability_runs: int = setting(5, "bootstrap refits measuring stability", minimum=0)
    baselines: bool = setting(True, "also score K-Means baselines")
    truth: Truth = section(Truth, "known segments")
    outcome: Outcome = section(Outcome, "predictive validity: what users do after a cut-off, "
                                        "beside RFM segments")


@dataclass
class Report:
    sample_users: int = setting(5000, "users on the 2-D map", minimum=10)


@dataclass
class Tag:
    attribute: Optional[str] = setting(None, "a users attribute to predict where it is "
                                             "unknown (or label)")
    bins: Optional[list[float]] = setting(None, "band edges of a numeric attribute",
                                          check=(_increasing, "increasing numbers"),
                                          expect="increasing numbers")
    label: Optional[Literal[TAG_LABELS]] = setting(None, "a behaviour after cutoff (or "
                                                         "attribute)")
    cutoff: Optional[str] = setting(None, "a label's date: features from before it, outcome "
                                          "from after it")
    horizon_days: int = setting(90, "days after the cutoff the outcome is taken from",
                                minimum=1)
    top_share: float = setting(0.1, "high_value: the top share of spend",
                               check=_OPEN_FRACTION)
    inputs: Optional[list[Literal[TAG_INPUTS]]] = setting(
        None, "features and/or embedding (default: features, plus the embedding when it "
              "cannot leak)", check=(bool, "a non-empty list of features and embedding"),
        expect="a non-empty list of features and embedding")
    test_fraction: float = setting(0.2, "users held out to test", check=_OPEN_FRACTION)
    validation_fraction: float = setting(0.2, "users held out for early stopping",
                                         check=_OPEN_FRACTION)
    seed: Optional[int] = setting(None, "seed of the split and the fit (default: train.seed)")
    max_classes: int = setting(20, "most classes of an attribute", minimum=2)
    validation_sample: int = setting(20_000, "users scored per validation", minimum=10)
    hidden: list[int] = setting([64, 32], "dense layers of the classifier",
                                check=_POSITIVE_INTS)
    dropout: float = setting(0.2, "dropout after each layer",
                             check=(lambda v: 0 <= v < 1, "in [0, 1)"))
    learning_rate: float = setting(0.004, "Adam's learning rate",
                                   check=(lambda v: v > 0, "> 0"))
    epochs: int = setting(100, "most epochs (early stopping decides)", minimum=1)
    patience: int = setting(8, "epochs without improvement before stopping", minimum=1)
    batch_size: int = setting(128, "mini-batch size (one rank trains each classifier)",
                              minimum=1)

    def check(self, path: str) -> None:
        if bool(self.attribute) == bool(self.label):
            raise PersonaError(f"{path} needs exactly one of `attribute` (a users column) or "
                               f"`label` ({' or '.join(TAG_LABELS)})")
        if self.label and not self.cutoff:
            raise PersonaError(f"{path}.cutoff is missing: a {self.label} label needs the "
                               f"date that separates features from outcome")
        if self.test_fraction + self.validation_fraction >= 0.9:
            raise PersonaError(f"{path}: test_fraction + validation_fraction must leave users "
                               f"to train on (< 0.9)")


@dataclass
class Privacy:
    pseudonymize: bool = setting(True, "replace every user id by a keyed hash (HMAC-SHA256) "
                                       "at ingest, before anything is written")
    key_env: str = setting("PERSONA_KEY", "environment variable holding the key (read first)",
                           check=_NAME)
    key_file: Optional[str] = setting(None, "file holding the key, when the variable is not "
                                            "set")
    create_key: bool = setting(False, "make a random key in key_file when it does not exist "
                                      "(for a local demo, never for real data)")
    vault_root: Optional[str] = setting(None, "folder apart from the lake for what may hold "
                                              "personal data: quarantined raw rows, the "
                                              "identity map (default: <lake.root>-vault)")
    identity_map: bool = setting(False, "write raw id -> pseudonym to <vault_root>/"
                                        "identity_map, for those allowed to re-identify")
    min_segment_size: int = setting(50, "segments with fewer users are left out of exports "
                                        "and published aggregates", minimum=1)
    retention_hours: int = setting(168, "how long erased rows stay readable by time travel "
                                        "before forget's vacuum removes their files",
                                   minimum=0)


@dataclass
class Retrain:
    max_psi: float = setting(0.25, "a feature drifted when its population stability index "
                                   "against the training reference exceeds this", minimum=0)
    max_drifted_share: float = setting(0.2, "retraining is due when more than this share of "
                                            "features drifted",
                                       check=(lambda v: 0 <= v <= 1, "in [0, 1]"))
    max_share_change: float = setting(0.05, "retraining is due when a segment's share of "
                                            "users moved by more than this since its model "
                                            "was fitted (0.05: five points)",
                                      check=(lambda v: 0 <= v <= 1, "in [0, 1]"))
    max_age_days: Optional[int] = setting(None, "retraining is due when the models in use are "
                                                "older than this (default: never for age)",
                                          minimum=1)
    auto: bool = setting(False, "persona update retrains (features, train, embed, segment) "
                                "when retraining is due")


@dataclass
class Settings:
    """The whole configuration."""

    lake: Lake = section(Lake, "the lake")
    spark: Spark = section(Spark, "the Spark session")
    sources: Sources = section(Sources, "raw input; only events is required")
    ingest: Ingest = section(Ingest, "persona ingest")
    features: Features = section(Features, "per-user features")
    train: Train = section(Train, "the autoencoder and its Horovod training")
    segment: Segment = section(Segment, "segmentation")
    model: Model = section(Model, "the encoder in use")
    registry: Registry = section(Registry, "MLflow model registry names")
    mlflow: Mlflow = section(Mlflow, "MLflow tracking")
    evaluate: Evaluate = section(Evaluate, "persona evaluate")
    report: Report = section(Report, "persona report")
    privacy: Privacy = section(Privacy, "pseudonymous ids, personal data, erasure, exports")
    retrain: Retrain = section(Retrain, "when persona embed, segment and update say "
                                              "retraining is due")
    tags: dict[str, Tag] = setting({}, "profile tags (persona tag): one classifier per "
                                       "target, tags.<name>")

    def check(self, path: str) -> None:
        for name in self.tags:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise PersonaError(f"tags.{name}: a tag name may only have letters, digits, "
                                   f"- and _")
        if self.train.privacy.noise_multiplier is not None and self.segment.method in (
                "dec", "idec"):
            raise PersonaError(f"segment.method {self.segment.method} refines the encoder on "
                               f"the users' data without differential privacy: with "
                               f"train.privacy.noise_multiplier set, use kmeans or gmm")
