"""Incremental ingest: only new files are read, each batch reconciles, a re-run with nothing
new writes nothing, a changed file or setting rebuilds the source, and totals survive an
erasure."""
import datetime as dt
import time

import pytest
import yaml
from pyspark.sql import functions as F

from persona.cli import main
from persona.errors import PersonaError
from persona.features.build import latest_profiles
from persona.ingest.increments import (BATCHES_TABLE, FILES_TABLE, changed_files, new_files,
                                       settings_digest)
from persona.ingest.sources import SourceSpec
from persona.lake.tables import Lake
from persona.pipeline import run_single
from persona.privacy.pseudonyms import Ids
from tests.conftest import make_config

pytestmark = pytest.mark.stage

HEADER = "user_id,event_time,event_type,amount\n"
T0, T1 = dt.datetime(2026, 1, 1, 9), dt.datetime(2026, 1, 2, 9)


def test_new_and_changed_files(spark):
    listed = spark.createDataFrame(
        [("a", 10, T0), ("b", 20, T1), ("c", 5, T0)], "path string, length long, modified timestamp")
    taken = spark.createDataFrame(
        [("a", 10, T0), ("b", 20, T0), ("gone", 1, T0)],
        "path string, length long, modified timestamp")
    assert sorted(r.path for r in new_files(listed, taken).collect()) == ["c"]
    assert [r.path for r in changed_files(listed, taken).collect()] == ["b"]


def test_settings_digest_follows_what_decides_the_rows():
    spec = SourceSpec.from_config("events", {"path": "/raw/events"})
    base = settings_digest(spec, True, b"k" * 32)
    assert settings_digest(spec, True, b"k" * 32) == base
    assert settings_digest(spec, True, b"j" * 32) != base  # another key: other pseudonyms
    assert settings_digest(spec, False, None) != base
    mapped = SourceSpec.from_config("events", {"path": "/raw/events",
                                               "columns": {"user_id": "customer"}})
    assert settings_digest(mapped, True, b"k" * 32) != base


def test_latest_profile_per_user(spark):
    users = spark.createDataFrame(
        [("u1", "free", 1), ("u1", "pro", 2), ("u2", "free", 1)],
        "user_id string, plan string, _ingest_batch int")
    assert sorted(tuple(r) for r in latest_profiles(users).select("user_id", "plan").collect()) \
        == [("u1", "pro"), ("u2", "free")]


def _write(folder, name, rows):
    path = folder / name
    path.write_text(HEADER + "".join(f"{r}\n" for r in rows))
    return path


@pytest.fixture()
def landing(spark, tmp_path):
    """A landing folder with two days of events (one bad row) and a configuration on it."""
    folder = tmp_path / "events"
    folder.mkdir()
    _write(folder, "day1.csv", ["u1,2026-01-01 10:00:00,view,", "u2,2026-01-01 11:00:00,buy,5"])
    _write(folder, "day2.csv", ["u1,2026-01-02 10:00:00,buy,7", "u3,not a time,view,"])
    config = make_config(str(tmp_path))
    config.set("sources", {"events": {"path": str(folder), "format": "csv"}})
    return folder, config, Lake(spark, config.path_of("lake.root")), \
        Lake(spark, config.path_of("lake.root") + "-vault")


def _versions(lake, vault):
    return {t: lake.version(t) for t in ("bronze/events", FILES_TABLE, BATCHES_TABLE)} | {
        "quarantine/events": vault.version("quarantine/events")}


def _batches(lake):
    return [(r.batch, r.mode, r.files, r.rows_read, r.rows_bronze, r.rows_quarantine)
            for r in lake.read(BATCHES_TABLE).orderBy("batch").collect()]


def test_only_new_files_are_read_and_a_rerun_is_a_no_op(spark, landing):
    folder, config, lake, vault = landing
    first = run_single("ingest", config)
    assert first["events_rows_read"] == 4 and first["events_rows_bronze"] == 3
    assert _batches(lake) == [(1, "full", 2, 4, 3, 1)]

    before = _versions(lake, vault)
    again = run_single("ingest", config)
    assert again["events_rows_read"] == 0
    assert _versions(lake, vault) == before  # nothing new: no table gets a new version

    _write(folder, "day3.csv", ["u4,2026-01-03 10:00:00,view,", "u2,2026-01-03 12:00:00,buy,x",
                                "u2,2026-01-03 13:00:00,buy,3"])
    third = run_single("ingest", config)
    assert (third["events_rows_read"], third["events_rows_bronze"],
            third["events_rows_quarantine"]) == (3, 2, 1)
    assert (third["events_total_rows_read"], third["events_total_rows_bronze"],
            third["events_total_rows_quarantine"]) == (7, 5, 2)
    assert _batches(lake)[-1] == (2, "incremental", 1, 3, 2, 1)
    bronze = lake.read("bronze/events")
    assert bronze.count() == 5
    assert {r._ingest_batch: r["count"] for r in bronze.groupBy("_ingest_batch").count()
            .collect()} == {1: 3, 2: 2}
    assert lake.read(FILES_TABLE).count() == 3
    # the batch's rows were written once, next to the earlier ones
    ids = Ids.of(config)
    assert bronze.where(F.col("user_id") == ids.value("u4")).count() == 1
    assert vault.read("quarantine/events").where("_reason = 'amount is not a number'") \
        .count() == 1


def test_a_new_file_may_bring_a_new_column(spark, landing):
    folder, config, lake, vault = landing
    run_single("ingest", config)
    (folder / "day3.csv").write_text(HEADER.strip() + ",coupon\n"
                                     "u5,2026-01-03 10:00:00,buy,4,SPRING\n"
                                     "u6,2026-01-03 11:00:00,buy,x,WINTER\n")
    third = run_single("ingest", config)
    assert (third["events_rows_bronze"], third["events_rows_quarantine"]) == (1, 1)
    quarantine = vault.read("quarantine/events")
    assert "coupon" in quarantine.columns
    assert [r.coupon for r in quarantine.orderBy("_ingest_batch").collect()] == [None, "WINTER"]


def test_a_changed_file_or_setting_rebuilds_the_source(spark, landing):
    folder, config, lake, vault = landing
    run_single("ingest", config)
    time.sleep(1)  # a new modification time even on coarse file systems
    _write(folder, "day1.csv", ["u1,2026-01-01 10:00:00,view,"])
    rebuilt = run_single("ingest", config)
    assert rebuilt["events_rows_read"] == 3
    assert _batches(lake)[-1] == (2, "full", 2, 3, 2, 1)
    assert lake.read("bronze/events").count() == 2
    assert lake.read(FILES_TABLE).where("batch = 2").count() == 2

    config.set("sources.events.reject", [{"reason": "views", "when": "event_type = 'view'"}])
    again = run_single("ingest", config)
    assert (again["events_rows_bronze"], again["events_rows_quarantine"]) == (1, 2)
    assert _batches(lake)[-1][:2] == (3, "full")

    config.set("ingest.mode", "full")
    run_single("ingest", config)
    assert _batches(lake)[-1] == (4, "full", 2, 3, 1, 2)
    assert lake.read("bronze/events").count() == 1


def test_totals_count_the_rows_forget_erased(spark, landing, tmp_path):
    folder, config, lake, vault = landing
    config.set("privacy.retention_hours", 0)
    run_single("ingest", config)
    conf, ids = tmp_path / "conf.yaml", tmp_path / "ids.txt"
    conf.write_text(yaml.safe_dump(config.data))
    ids.write_text("u1\n")
    assert main(["forget", "--conf", str(conf), "--ids", str(ids)]) == 0
    assert lake.read("bronze/events").count() == 1

    _write(folder, "day3.csv", ["u5,2026-01-03 10:00:00,view,"])
    after = run_single("ingest", config)
    assert after["events_rows_read"] == 1
    assert (after["events_total_rows_read"], after["events_total_rows_bronze"],
            after["events_total_rows_quarantine"]) == (5, 2, 1)


def test_a_failing_source_leaves_the_others_batches_written_and_recorded(spark, landing,
                                                                         tmp_path):
    """Sources are ingested side by side: one that cannot be read fails the run with its
    line, and the others' batches are written and in the log; a full and an incremental
    batch are recorded together by the next run."""
    folder, config, lake, vault = landing
    users = tmp_path / "users"
    config.set("sources.users", {"path": str(users), "format": "csv"})
    with pytest.raises(PersonaError, match=r"^sources\.users\.path: cannot read .*users as csv"):
        run_single("ingest", config)
    assert _batches(lake) == [(1, "full", 2, 4, 3, 1)]
    assert lake.read("bronze/events").count() == 3 and not lake.exists("bronze/users")

    users.mkdir()
    (users / "users.csv").write_text("user_id,plan\nu1,free\nu2,pro\n")
    _write(folder, "day3.csv", ["u4,2026-01-03 10:00:00,view,"])
    run_single("ingest", config)
    assert sorted((r.source, r.batch, r.mode, r.files, r.rows_bronze)
                  for r in lake.read(BATCHES_TABLE).collect()) == [
        ("events", 1, "full", 2, 3), ("events", 2, "incremental", 1, 1),
        ("users", 1, "full", 1, 2)]
    assert sorted((r.source, r.batch, r.path.rsplit("/", 1)[-1])
                  for r in lake.read(FILES_TABLE).collect()) == [
        ("events", 1, "day1.csv"), ("events", 1, "day2.csv"), ("events", 2, "day3.csv"),
        ("users", 1, "users.csv")]
    assert lake.read("bronze/users").count() == 2
