"""The tag stage on a small lake: which configured tags it can train, and its one-line
errors (the tags themselves are trained end to end in test_tag)."""
import logging

import pytest
import yaml

from persona.cli import main
from persona.errors import PersonaError
from persona.lake.tables import Lake
from persona.pipeline import run_single
from tests.conftest import make_config

pytestmark = pytest.mark.stage


class Lines(logging.Handler):
    """The messages logged by one stage."""

    def __init__(self, stage: str):
        super().__init__()
        self.messages, self.logger = [], logging.getLogger(f"persona.{stage}")

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        self.logger.addHandler(self)
        return self.messages

    def __exit__(self, *exc):
        self.logger.removeHandler(self)


def tag_command(tmp_path, config) -> int:
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump(config.data))
    return main(["tag", "--conf", str(conf)])


def test_imported_features_skip_the_tags_their_sources_lack(spark, tmp_path):
    """The default tags read bronze/users and bronze/events, which ingest writes: on
    imported features each is skipped with its reason, and the stage says none is left."""
    path = tmp_path / "features.csv"
    path.write_text("customer,a,b\nc1,1,2\nc2,3,5\nc3,4,4\n")
    tags = {"churn": {"label": "churn", "cutoff": "2025-03-15"}, "plan": {"attribute": "plan"}}
    config = make_config(str(tmp_path), tags=tags, features={"input": {
        "path": str(path), "format": "csv", "id_column": "customer"}})
    run_single("features", config)
    with Lines("tag") as messages:
        assert tag_command(tmp_path, config) == 0
    assert [m for m in messages if "skipped" in m or "no tag" in m] == [
        "tag churn skipped: its labels come from bronze/events, which imported features "
        "(features.input.path) do not provide",
        "tag plan skipped: its labels come from bronze/users, which imported features "
        "(features.input.path) do not provide",
        "no tag to train: every configured tag was skipped; gold/user_tags left as it was"]
    lake = Lake(spark, config.path_of("lake.root"))
    assert not lake.exists("gold/user_tags") and not lake.exists("gold/tag_metrics")


def test_tag_source_missing_without_imported_features_is_one_error_line(spark, tmp_path,
                                                                         capsys):
    config = make_config(str(tmp_path), tags={"plan": {"attribute": "plan"}})
    lake = Lake(spark, config.path_of("lake.root"))
    lake.overwrite(spark.createDataFrame([("u1", [0.5], 1.0, None)],
                                         "user_id string, features array<float>, a double, "
                                         "as_of timestamp"), "silver/user_features")
    assert tag_command(tmp_path, config) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[-1] == (f"persona: error: table bronze/users not found under "
                         f"lake.root={lake.root}: run `persona ingest` first")


def test_features_at_a_cutoff_are_built_once_for_the_tags_that_share_it(spark, monkeypatch,
                                                                         tmp_path):
    """Two behaviour tags with the same cutoff reuse one set of point-in-time features, also
    when they are prepared side by side; another cutoff builds its own."""
    import time
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace
    from datetime import datetime

    from persona.stages import tag

    events = spark.createDataFrame([("u1", datetime(2025, 1, 1), 2.0),
                                    ("u2", datetime(2025, 2, 1), 3.0)],
                                   ["user_id", "event_time", "amount"])
    built = []

    def build_groups(ctx, before, cutoff, leave_out=()):
        built.append(cutoff)
        time.sleep(0.2)  # long enough for the other threads to ask for the same cutoff
        assert set(leave_out) == {"text", "items"}  # refitted embeddings are not built
        return {"behaviour": before.groupBy("user_id").agg({"amount": "sum"})
                .withColumnRenamed("sum(amount)", "spend")}

    monkeypatch.setattr(tag, "build_groups", build_groups)
    ctx = SimpleNamespace(lake=SimpleNamespace(read=lambda name: events),
                          config=make_config(str(tmp_path)),
                          log=logging.getLogger("persona.tag"))
    histories = tag.Histories(ctx)
    march, april = datetime(2025, 3, 1), datetime(2025, 4, 1)
    try:
        first, second = histories.at(march), histories.at(march)
        histories.at(april)
        assert first is second
        assert built == [march, april]
        may = datetime(2025, 5, 1)
        with ThreadPoolExecutor(3) as pool:
            fused = list(pool.map(histories.at, [may] * 3))
        assert built == [march, april, may] and all(f is fused[0] for f in fused)
        assert {r["user_id"]: r["spend"] for r in first.collect()} == {"u1": 2.0, "u2": 3.0}
        assert histories.span()["last"] == datetime(2025, 2, 1)
    finally:
        histories.release()


def test_tags_prepared_side_by_side_fail_on_the_first_failing_tag(spark, monkeypatch):
    """Every tag is prepared; the first failing one in order raises, and the rows the
    others kept are released."""
    from types import SimpleNamespace

    from persona.stages import tag

    released = []

    def prepare(ctx, spec, silver, histories):
        if spec.name in ("b", "c"):
            raise PersonaError(f"tags.{spec.name}: failed")
        return SimpleNamespace(rows=spec.name)

    monkeypatch.setattr(tag, "_prepare", prepare)
    monkeypatch.setattr(tag, "release", released.append)
    specs = [SimpleNamespace(name=name) for name in ("a", "b", "c", "d")]
    with pytest.raises(PersonaError, match=r"^tags\.b: failed$"):
        tag._prepare_all(None, specs, None, None)
    assert sorted(released) == ["a", "d"]
    ok = tag._prepare_all(None, specs[:1] + specs[3:], None, None)
    assert len(ok) == 2 and sorted(released) == ["a", "d"]
