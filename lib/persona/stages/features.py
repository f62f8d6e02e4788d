"""features: bronze tables → silver/user_features, one scaled feature row per user."""
from __future__ import annotations

import datetime as dt
import json
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import mlflow
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from persona.config.schema import Features
from persona.errors import PersonaError
from persona.features import build as fx
from persona.features import items, outlook
from persona.features.external import configured, import_features
from persona.features.state import FeatureState, save_state
from persona.lake.tables import merge_counts
from persona.lake.versions import content_version
from persona.runtime.context import StageContext
from persona.runtime.spark import kept, release
from persona.timestamps import parse_timestamp

HELP = ("bronze (or the table of features.input.path) → silver/user_features, one scaled "
        "feature row per user")
FEATURES_TABLE = "silver/user_features"
# Each user's feature groups before filling and scaling, kept by every build so that
# `persona update` can bring them forward without reading every user's history again.
AGGREGATES_TABLE = "silver/user_aggregates"
# Columns of silver/user_features that are not feature values.
META_COLUMNS = ("user_id", "features", "feature_set_version", "as_of")


def feature_columns(df) -> list[str]:
    """The named feature columns of a user_features table, in table order."""
    return [c for c in df.columns if c not in META_COLUMNS]


def _as_of(ctx: StageContext, events):
    configured = ctx.config.get("features.as_of")
    if configured:
        return parse_timestamp(ctx.spark, configured, "features.as_of")
    latest = events.agg(F.max("event_time").alias("t")).first()["t"]
    if latest is None:
        raise PersonaError("bronze/events is empty: nothing to build features from")
    return latest


# The outlook group is learned only from at least this many users per predictor column.
USERS_PER_OUTLOOK_PREDICTOR = 10

# Keys of the ``features`` column's metadata: the sequence at its end, and the named
# columns of each group, in the order their scaled values start the vector.
SEQUENCE_METADATA = "sequence"
GROUPS_METADATA = "groups"


def _enabled_groups(ctx: StageContext) -> list[str]:
    return ctx.config.get("features.groups")


def impute_method(config) -> str:
    """``features.impute``: absent levels (rating, text vector of a user without reviews)
    predicted from the user's other columns (regression, default) or set to the mean."""
    return config.get("features.impute")


def _event_levels(ctx: StageContext, events) -> dict[str, list[str]]:
    """The most frequent event types (for event_mix and sequence), categories (for
    category and sequence) and channels, for the enabled groups that encode them."""
    cfg = ctx.config
    enabled = set(_enabled_groups(ctx))
    levels = {}
    if enabled & {"event_mix", "sequence"}:
        levels["event_type"] = fx.top_values(events, "event_type",
                                             cfg.get("features.max_event_types"))
    if enabled & {"category", "sequence"}:
        levels["category"] = fx.top_values(events, "category",
                                           cfg.get("features.top_categories"))
    if "channel" in enabled:
        levels["channel"] = fx.top_values(events, "channel",
                                          cfg.get("features.max_channels"))
    return levels


def build_groups(ctx: StageContext, events, as_of, levels: dict | None = None,
                 leave_out: tuple[str, ...] = (), state: FeatureState | None = None,
                 only: DataFrame | None = None) -> dict:
    """Each enabled feature group that the data supports, as a DataFrame keyed by user_id;
    a group the data cannot support is skipped with the reason logged. ``levels`` are the
    :func:`_event_levels` of ``events`` when the caller has them already; the ``items`` and
    ``text`` groups named in ``leave_out`` are not built. A frozen ``state`` gives the groups
    and what they learned (nothing is fitted); an unfrozen one is filled with what is.
    ``only`` (a frozen state's): the ``user_id`` of the users whose profiles and content to
    read (``events`` are theirs already)."""
    cfg = ctx.config
    frozen = state is not None and state.frozen
    enabled = (list(state.groups) if frozen
               else [g for g in _enabled_groups(ctx) if g not in leave_out])
    if levels is None:
        levels = _event_levels(ctx, events)
    out = _event_groups(ctx, events, as_of, levels, enabled)
    if "outlook" in enabled:
        if frozen:
            base, *rest = out.values()
            out["outlook"] = outlook.predict(state.outlook, fx.fuse(base, rest))
        else:
            expected = _outlook(ctx, events, as_of, levels, out, enabled)
            if expected is not None:
                out["outlook"], models = expected
                if state is not None:
                    state.outlook = models
    if "items" in enabled:
        if frozen:
            raise PersonaError(f"feature set {state.version} has the items group, whose ALS "
                               "factors are refitted by every build: `persona update` cannot "
                               "bring it forward; leave items out of features.groups")
        if events.where(F.col("item_id").isNotNull()).limit(1).count():
            out["items"] = items.item_factors(events, as_of, cfg.get("features.item_factors"),
                                              cfg.get("features.seed"))
        else:
            ctx.log.info("items group skipped: events have no item_id values")

    users_conf = cfg.get("sources.users")
    if "profile" in enabled:
        if users_conf and ctx.lake.exists("bronze/users"):
            out["profile"] = _profile(ctx, users_conf.attributes, state, only)
        elif frozen:
            raise PersonaError(f"feature set {state.version} has the profile group and "
                               "bronze/users is missing: run `persona ingest`")
        else:
            ctx.log.info("profile group skipped: no users source configured")

    if {"content", "text"} & set(enabled):
        if cfg.get("sources.content") and ctx.lake.exists("bronze/content"):
            content = _bronze(ctx, "bronze/content").where(F.col("event_time") <= F.lit(as_of))
            if only is not None:
                content = content.join(only, "user_id", "left_semi")
            if "content" in enabled:
                out["content"] = fx.content_stats(content)
            if "text" in enabled:
                if not frozen and content.where(F.col("text").isNotNull()).limit(1).count():
                    model = fx.text_model(content, cfg.get("features.text_vector_size"),
                                          cfg.get("features.seed"))
                    if state is not None:
                        state.text_model = model
                    out["text"] = fx.text_vectors(content, model)
                elif frozen:
                    out["text"] = fx.text_vectors(content, state.text_model)
                else:
                    ctx.log.info("text group skipped: content has no text")
        elif frozen:
            raise PersonaError(f"feature set {state.version} has content groups and "
                               "bronze/content is missing: run `persona ingest`")
        else:
            ctx.log.info("content and text groups skipped: no content source configured")
    if frozen:
        # The frozen vector's groups, in its order, whatever the data holds now.
        return {name: out[name] for name in state.groups}
    return out


def _profile(ctx: StageContext, attrs, state: FeatureState | None,
             only: DataFrame | None = None):
    """The profile group: levels and fill values from a frozen ``state`` (of the users of
    ``only``, when given), else fitted on bronze/users (and kept in ``state``)."""
    users = _bronze(ctx, "bronze/users")
    if state is not None and state.frozen:
        if only is not None:
            users = users.join(only, "user_id", "left_semi")
        return fx.profile_attributes(users, state.profile_levels, list(attrs.numeric),
                                     state.profile_means)
    max_levels = ctx.config.get("features.max_levels")
    categorical = {a: fx.top_values(users, a, max_levels) for a in attrs.categorical}
    means = fx.numeric_means(users, list(attrs.numeric))
    if state is not None:
        state.profile_levels, state.profile_means = categorical, means
    return fx.profile_attributes(users, categorical, list(attrs.numeric), means)


def _outlook(ctx: StageContext, events, as_of, levels: dict, current: dict, enabled: list[str]):
    """The outlook group (:mod:`persona.features.outlook`) of the users of ``current`` (the
    event groups at ``as_of``) and its models, learned from the event groups one
    ``features.outlook_days`` period earlier and what users bought since; None, with the
    reason logged, when the events before that cut are too few to learn from."""
    days = ctx.config.get("features.outlook_days")
    start = as_of - dt.timedelta(days=days)
    earlier = events.where(F.col("event_time") <= F.lit(start))
    history = _event_groups(ctx, earlier, start, levels, enabled, log=False)
    columns = [c for df in history.values() for c in df.columns if c != "user_id"]
    base, *rest = history.values()
    if not base.limit(1).count():
        ctx.log.info("outlook group skipped: no events before %s (as_of - %d days) to learn "
                     "it from", start, days)
        return None
    history = kept(fx.fuse(base, rest))
    try:
        stats = fx.column_stats(history, columns)
        predictors = [c for c in columns if stats[c]["min"] != stats[c]["max"]]
        users = history.count()
        needed = USERS_PER_OUTLOOK_PREDICTOR * max(len(predictors), 1)
        if users < needed:
            ctx.log.info("outlook group skipped: %d users with events before %s (as_of - %d "
                         "days), fewer than the %d needed to learn it", users, start, days,
                         needed)
            return None
        outcome = outlook.next_period(events, start, days,
                                      list(ctx.config.get("features.purchase_types")))
        models = outlook.fit(history, outcome, predictors)
    finally:
        release(history)
    ctx.log.info("outlook: next %d days' log spend and purchase learned from %d users at %s "
                 "(R2 %s)", days, users, start,
                 ", ".join(f"{c} {models.r2[c]:.2f}" for c in outlook.COLUMNS))
    base, *rest = current.values()
    return outlook.predict(models, fx.fuse(base, rest)), models


def _event_groups(ctx: StageContext, events, as_of, levels: dict, enabled: list[str],
                  log: bool = True) -> dict:
    """The ``enabled`` groups made from events alone (behaviour always); ``log``: say which
    groups the events cannot support."""
    cfg = ctx.config
    skipped = ctx.log.info if log else lambda *_: None
    purchases = list(cfg.get("features.purchase_types"))
    out = {"behaviour": fx.behaviour(events, as_of, purchases)}
    if "windows" in enabled:
        out["windows"] = fx.window_shares(_window_sums(ctx, events, as_of), _windows(ctx))
    if "diversity" in enabled:
        out["diversity"] = fx.diversity(events)
    if "event_mix" in enabled:
        out["event_mix"] = fx.event_mix(events, levels["event_type"])
    if "category" in enabled:
        if levels["category"]:
            out["category"] = fx.category_affinity(events, levels["category"])
        else:
            skipped("category group skipped: events have no category values")
    if "channel" in enabled:
        if levels["channel"]:
            out["channel"] = fx.channel_mix(events, levels["channel"])
        else:
            skipped("channel group skipped: events have no channel values")
    if "time" in enabled:
        out["time"] = fx.time_profile(events)
    return out


def _windows(ctx: StageContext) -> list[int]:
    return sorted(ctx.config.get("features.windows"))


def _window_sums(ctx: StageContext, events, as_of):
    """:func:`fx.window_sums` of ``events`` with the configured windows: the windows group
    divides them, silver/user_aggregates keeps them (the same plan: Spark computes it once)."""
    return fx.window_sums(events, as_of, _windows(ctx),
                          list(ctx.config.get("features.purchase_types")))


def _sequence_layout(ctx: StageContext, levels: dict,
                     frozen: FeatureState | None = None) -> fx.SequenceLayout | None:
    """The layout of the ``sequence`` group over the :func:`_event_levels` (a ``frozen``
    state's own), or None when the group is off."""
    if frozen is not None:
        seq = frozen.sequence
        return seq and fx.SequenceLayout(steps=seq["steps"], event_types=tuple(seq["event_types"]),
                                         categories=tuple(seq["categories"]))
    if "sequence" not in _enabled_groups(ctx):
        return None
    return fx.SequenceLayout(
        steps=ctx.config.get("features.sequence_length"),
        event_types=tuple(levels["event_type"]), categories=tuple(levels["category"]))


def sequence_shape(features_df) -> tuple[int, int] | None:
    """``(steps, step_size)`` of the sequence at the end of the ``features`` vector of a
    user_features table, or None when it has none."""
    meta = features_df.schema["features"].metadata.get(SEQUENCE_METADATA)
    return (int(meta["steps"]), int(meta["step_size"])) if meta else None


def feature_groups(features_df) -> dict[str, list[str]]:
    """The named columns of each feature group of a user_features table (empty for an
    imported feature table)."""
    groups = features_df.schema["features"].metadata.get(GROUPS_METADATA, [])
    return {g["name"]: list(g["columns"]) for g in groups}


def _group_weights(ctx: StageContext) -> dict[str, float]:
    """``features.group_weights``: a multiplier per group, the configured ones over the
    defaults (1 for a group that has none)."""
    return {**Features().group_weights, **ctx.config.get("features.group_weights")}


def _pinned(ctx: StageContext) -> dict[str, int]:
    """``features.input_versions``: Delta versions to rebuild a past feature set from."""
    return ctx.config.get("features.input_versions")


def _bronze(ctx: StageContext, table: str):
    """A bronze table, at its pinned version when ``features.input_versions`` names it."""
    return ctx.lake.read(table, _pinned(ctx).get(table))


def _at_latest(ctx: StageContext) -> bool:
    """Whether the build reads the bronze tables as they are, up to their latest event
    (neither ``features.as_of`` nor ``features.input_versions`` set)."""
    return not (ctx.config.get("features.as_of") or _pinned(ctx))


def _input_versions(ctx: StageContext) -> dict[str, int]:
    """The Delta version of every input this build read."""
    pinned = _pinned(ctx)
    return {t: pinned.get(t, ctx.lake.version(t))
            for t in ("bronze/events", "bronze/users", "bronze/content") if ctx.lake.exists(t)}


def _check_quality(ctx: StageContext, stats: dict[str, dict], scaler: fx.Scaler) -> None:
    """Log each column's coverage and range; stop when the features look broken."""
    constant = scaler.constant_columns()
    for column in constant:
        ctx.log.info("feature %s is constant (%.3g) for every user", column, scaler.means[column])
    sparse = [c for c, st in stats.items() if st["null_share"] > 0.5]
    if sparse:
        ctx.log.info("features absent for more than half of the users: %s", ", ".join(sparse))
    limit = ctx.config.get("features.max_constant_share")
    if len(constant) > limit * len(scaler.columns):
        raise PersonaError(
            f"features look broken: {len(constant)} of {len(scaler.columns)} columns are "
            f"constant ({', '.join(constant[:8])}{', ...' if len(constant) > 8 else ''}); "
            f"check the bronze tables and the source column mapping")


@dataclass
class Built:
    """A feature build: the rows of silver/user_features, and what the build knows of them."""

    table: DataFrame
    state: FeatureState
    users: int
    as_of: object
    layout: fx.SequenceLayout | None
    definition: dict = field(default_factory=dict)  # what the version hashes (fitted builds)
    stats: dict = field(default_factory=dict)  # column_stats of the fused columns (fitted)
    aggregates: DataFrame | None = None  # the rows of silver/user_aggregates
    inputs: dict = field(default_factory=dict)  # the bronze versions it read
    recomputed: int | None = None  # users whose history was read again (None: every user)


def _events(ctx: StageContext):
    """The bronze events at or before ``features.as_of``, and that time."""
    events = _bronze(ctx, "bronze/events")
    as_of = _as_of(ctx, events)
    return events.where(F.col("event_time") <= F.lit(as_of)), as_of


@contextmanager
def building(ctx: StageContext, frozen: FeatureState | None = None,
             incremental: bool = False):
    """The feature rows of every user with events at ``features.as_of``, fitted on this data
    or, with a ``frozen`` state, made with what that state learned; valid inside the block.
    ``incremental`` (frozen only): from silver/user_aggregates when it can (:func:`_since`),
    reading again only the history of users whose events, profile or content changed."""
    inputs = _input_versions(ctx)
    events, as_of = _events(ctx)
    cached = []  # persisted for the build, released at its end

    def cache(df):
        cached.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return df

    state = frozen or FeatureState()
    since = _since(ctx, state, as_of, inputs) if incremental else None
    levels = state.levels if frozen else _event_levels(ctx, events)
    layout = _sequence_layout(ctx, levels, frozen)
    if since is None:
        groups = build_groups(ctx, events, as_of, levels, state=state)
        joined = _joined(ctx, groups, events, as_of, layout)
    else:
        cached.append(since.changed)
        groups, joined = None, _brought_forward(ctx, events, as_of, state, layout, since,
                                                cache)
    aggregates = None
    try:
        aggregates = kept(joined)  # wide: every statistic and the write read it
        users = aggregates.count()
        if users == 0:
            raise PersonaError(f"no events at or before features.as_of={as_of}")
        rows = aggregates.drop(fx.WINDOW_SUMS)
        built = (_apply(ctx, rows, state, layout) if frozen
                 else _fit(ctx, rows, groups, state, levels, layout))
        yield replace(built, users=users, as_of=as_of, aggregates=aggregates, inputs=inputs,
                      recomputed=None if since is None else since.recomputed)
    finally:
        if aggregates is not None:
            release(aggregates)
        for df in cached:
            df.unpersist()


def _joined(ctx: StageContext, groups: dict, events, as_of, layout: fx.SequenceLayout | None):
    """The groups (and the sequence) side by side, one row per user with events, absent
    values still null, with the window sums of the windows group: the rows of
    silver/user_aggregates."""
    base, *rest = groups.values()
    if layout:
        rest.append(fx.sequences(events, layout))
    if "windows" in groups:
        rest.append(fx.kept_window_sums(_window_sums(ctx, events, as_of)))
    return fx.join_groups(base, rest)


@dataclass
class _Since:
    """What an incremental build starts from: the aggregates of the last build, at
    ``as_of``, and the users whose bronze rows changed since (persisted)."""

    aggregates: DataFrame
    as_of: object
    changed: DataFrame
    recomputed: int


def _since(ctx: StageContext, state: FeatureState, as_of, inputs: dict) -> _Since | None:
    """The last build's aggregates, when the features at ``as_of`` can be brought forward
    from them: made with the feature set ``state``, at or before ``as_of``, from the same
    bronze tables, whose change data feeds say which users changed since (with the users
    whose content is dated after the last build's as_of). Else None, the reason logged (the
    build then reads every user's history)."""
    text = ctx.lake.commit_metadata(AGGREGATES_TABLE)
    last = json.loads(text) if text else None
    last_as_of = last and dt.datetime.fromisoformat(last["as_of"])
    why = None
    if last is None or last.get("feature_set") != state.version:
        why = "no aggregates of this feature set"
    elif "outlook" in state.groups:
        why = "the outlook group is predicted from every user's columns"
    elif not (_at_latest(ctx) and last.get("latest")):
        why = "features.as_of or features.input_versions set for this build or the last"
    elif set(last["inputs"]) != set(inputs):
        why = "the bronze tables are not those of the last build"
    elif last_as_of > as_of:
        why = f"the latest event ({as_of}) is before the last build's as_of ({last['as_of']})"
    elif ("windows" in state.groups
          and fx.WINDOW_SUMS not in ctx.lake.read(AGGREGATES_TABLE).columns):
        why = "the last build's aggregates have no window sums"
    if why:
        ctx.log.info("every user's history is read: %s", why)
        return None
    late = None
    if {"content", "text"} & set(state.groups) and "bronze/content" in inputs:
        # Content dated after the last build's as_of (its latest event) comes in now.
        late = _bronze(ctx, "bronze/content").where(
            (F.col("event_time") > F.lit(last_as_of)) & (F.col("event_time") <= F.lit(as_of)))
    found = ctx.lake.changed_keys(last["inputs"], inputs, also=late)
    if found is None:
        ctx.log.info("every user's history is read: the bronze tables' change data feeds "
                     "do not go back to the last build (%s)", last["inputs"])
        return None
    return _Since(ctx.lake.read(AGGREGATES_TABLE), last_as_of, *found)


def _brought_forward(ctx: StageContext, events, as_of, state: FeatureState,
                     layout: fx.SequenceLayout | None, since: _Since, cache):
    """The aggregates at ``as_of``: the changed users' built from their whole history, the
    others' aged from the last build (recency, tenure, and the window sums moved by the few
    events that changed window in between). ``cache`` persists the changed users' events,
    which every group reads."""
    changed = since.changed
    own = cache(events.join(changed, "user_id", "left_semi"))
    fresh = _joined(ctx, build_groups(ctx, own, as_of, state.levels, state=state, only=changed),
                    own, as_of, layout)
    others = since.aggregates.join(changed, "user_id", "left_anti")
    days = (as_of - since.as_of).total_seconds() / fx.SECONDS_PER_DAY
    others = fx.aged(others, days)
    if days > 0 and "windows" in state.groups:
        others = fx.aged_windows(others, events, since.as_of, as_of, _windows(ctx),
                                 list(ctx.config.get("features.purchase_types")))
    ctx.log.info("%d users changed since the build at %s: their history is read again; "
                 "the others' features age by %.2f days", since.recomputed, since.as_of, days)
    return others.unionByName(fresh)


def _fit(ctx: StageContext, joined, groups: dict, state: FeatureState, levels: dict,
         layout: fx.SequenceLayout | None) -> Built:
    """Fit imputation, scaler and sequence weight on ``joined``; the state gets its version."""
    group_columns = {name: [c for c in df.columns if c != "user_id"]
                     for name, df in groups.items()}
    stats = fx.column_stats(joined, [c for cols in group_columns.values() for c in cols])
    fused, imputation = fx.fill_absent(joined, group_columns, stats, impute_method(ctx.config))
    if imputation and imputation.models:
        ctx.log.info("absent values of %s predicted from %d columns (R2 %.2f to %.2f)",
                     ", ".join(imputation.models), len(imputation.predictors),
                     min(imputation.r2.values()), max(imputation.r2.values()))
    scaler = fx.Scaler.fit(fused, group_columns, group_weights=_group_weights(ctx))
    _check_quality(ctx, stats, scaler)
    state.groups, state.levels, state.scaler = group_columns, levels, scaler
    state.imputation = imputation
    state.means = {c: st["mean"] for c, st in stats.items()}
    definition = {
        "as_of": None,  # set below, once the build's time is known
        "groups": group_columns,
        "inputs": _input_versions(ctx),
        "settings": {k: v for k, v in ctx.config.section("features").items()
                     if k not in ("as_of", "input_versions", "input")},
    }
    if layout:
        weight = _group_weights(ctx).get("sequence", 1.0) * fx.sequence_weight(joined)
        state.sequence = {"steps": layout.steps, "event_types": list(layout.event_types),
                          "categories": list(layout.categories), "weight": weight}
        definition["sequence"] = {"step_size": layout.step_size, **state.sequence}
    return Built(fused, state, 0, None, layout, definition, stats)


def _apply(ctx: StageContext, joined, state: FeatureState, layout) -> Built:
    """Fill absent values with what ``state`` learned (nothing is fitted)."""
    return Built(fx.impute(joined, state.means, state.imputation), state, 0, None, layout)


def _table(built: Built) -> DataFrame:
    """The rows of silver/user_features: named columns, the scaled vector (with the groups'
    and the sequence's layout in its metadata), the feature set version and as_of."""
    state, layout = built.state, built.layout
    out = state.scaler.transform(built.table)
    # A list, not a map: metadata maps do not keep their order.
    metadata = {GROUPS_METADATA: [{"name": name, "columns": columns}
                                  for name, columns in state.groups.items()]}
    if layout:
        out = fx.with_sequence(out, state.sequence["weight"], layout.size)
        metadata[SEQUENCE_METADATA] = {"steps": layout.steps, "step_size": layout.step_size}
    return (out.withColumn("features", F.col("features").alias("features", metadata=metadata))
            .withColumn("feature_set_version", F.lit(state.version))
            .withColumn("as_of", F.lit(built.as_of).cast("timestamp")))


def run(ctx: StageContext) -> None:
    if configured(ctx.config):
        import_features(ctx, FEATURES_TABLE)
        return
    with building(ctx) as built:
        state, layout = built.state, built.layout
        definition = {**built.definition, "as_of": str(built.as_of)}
        state.version = content_version(definition, sort_keys=True)
        ctx.lake.overwrite(_table(built), FEATURES_TABLE)
        _keep_aggregates(ctx, built)
    save_state(ctx.lake, state)
    users, scaler, version = built.users, state.scaler, state.version
    names = [*state.groups, *(["sequence"] if layout else [])]
    ctx.log.info("%d users, %d features in %d groups (%s), as_of %s, feature set %s",
                 users, len(scaler.columns) + (layout.size if layout else 0), len(names),
                 ", ".join(names), built.as_of, version)
    if layout:
        ctx.log.info("sequence: last %d events of each user, %d values per event (%d event "
                     "types, %d categories, gap)", layout.steps, layout.step_size,
                     len(layout.event_types), len(layout.categories))
    ctx.metric("users", users)
    ctx.metric("features", len(scaler.columns))
    ctx.metric("constant_features", len(scaler.constant_columns()))
    mlflow.set_tag("feature_set_version", version)
    mlflow.log_dict({**definition, "version": version, "means": scaler.means,
                     "stds": scaler.stds, "weights": scaler.weights,
                     "imputation": vars(state.imputation) if state.imputation else None},
                    "feature_set.json")
    mlflow.log_dict(built.stats, "feature_quality.json")


def _keep_aggregates(ctx: StageContext, built: Built) -> None:
    """silver/user_aggregates: the build's rows before filling and scaling, with what they
    were made from in the commit (feature set, as_of, bronze versions), for the next
    incremental build."""
    ctx.lake.overwrite(built.aggregates, AGGREGATES_TABLE, metadata=json.dumps({
        "feature_set": built.state.version, "as_of": str(built.as_of),
        "latest": _at_latest(ctx),
        "inputs": built.inputs}, sort_keys=True))


def refresh(ctx: StageContext, state: FeatureState) -> dict[str, int]:
    """silver/user_features brought to ``features.as_of`` (default: the latest event) with
    the frozen ``state``, incrementally (:func:`building`). When ``as_of`` moved, every
    user's row changes (recency ages): the table is replaced; else only rows that changed are
    rewritten (a MERGE). Returns the row counts: inserted, updated, deleted."""
    with building(ctx, state, incremental=True) as built:
        rows = _table(built)
        current = ctx.lake.read(FEATURES_TABLE).select("as_of", "feature_set_version").first()
        if current is not None and tuple(current) != (built.as_of, state.version):
            changes = _replaced(ctx, rows, built.users)
        else:
            changes = ctx.lake.merge(
                rows, FEATURES_TABLE, key="user_id",
                changed="t.features <> s.features OR t.as_of <> s.as_of "
                        "OR t.feature_set_version <> s.feature_set_version")
        # Last: the rows were made from the aggregates, and Spark drops the cached rows of
        # a table it overwrites (read again, they would be aged twice).
        _keep_aggregates(ctx, built)
    ctx.log.info("%d users' features at %s with feature set %s (nothing fitted): %s",
                 built.users, built.as_of, state.version, merge_counts(changes))
    ctx.metric("users", built.users)
    ctx.metric("users_recomputed",
               built.users if built.recomputed is None else built.recomputed)
    for kind, count in changes.items():
        ctx.metric(f"rows_{kind}", count)
    return changes


def _replaced(ctx: StageContext, rows: DataFrame, users: int) -> dict[str, int]:
    """silver/user_features overwritten with ``rows`` (``users`` of them), every one of
    which differs from the table's (another ``as_of``); the counts a MERGE would give."""
    before = ctx.lake.read(FEATURES_TABLE, ctx.lake.version(FEATURES_TABLE)).select(
        "user_id", F.lit(True).alias("_before"))
    keys = rows.select("user_id", F.lit(True).alias("_now"))
    inserted, deleted = keys.join(before, "user_id", "full_outer").agg(
        F.count(F.when(F.col("_before").isNull(), 1)),
        F.count(F.when(F.col("_now").isNull(), 1))).first()
    ctx.lake.overwrite(rows, FEATURES_TABLE)
    return {"inserted": inserted, "updated": users - inserted, "deleted": deleted}
