"""persona forget: the users of an ids file leave every table of the lake and the vault, the
files time travel reads, the caches and the audience files; meta/audit counts, never names."""
import os
from functools import reduce

import pytest
import yaml
from pyspark.sql import functions as F

from persona.cli import main
from persona.lake.tables import Lake
from persona.privacy.export import write_audience
from persona.privacy.audit import AUDIT_TABLE
from persona.privacy.forget import delta_tables, id_columns, pseudonyms_of
from persona.privacy.pseudonyms import Ids
from tests.conftest import make_config
from tests.test_cli import error_line

pytestmark = pytest.mark.stage


def test_a_line_is_a_pseudonym_only_when_the_lake_holds_it():
    ids = Ids(b"k" * 32)
    known, unknown = ids.value("known"), "f" * 64
    out = pseudonyms_of(["alice", known, unknown], {known}, ids)
    assert out == {"alice": ids.value("alice"), known: known, unknown: ids.value(unknown)}
    assert pseudonyms_of(["alice"], set(), Ids(None)) == {"alice": "alice"}


def test_quarantine_tables_are_matched_on_their_raw_id_column():
    assert id_columns("quarantine/events", ["customer", "_reason"], {"events": "customer"}) == [
        "customer"]
    assert id_columns("identity_map", ["source", "user_id", "pseudonym"], {}) == [
        "user_id", "pseudonym"]
    assert id_columns("meta/models", ["model_version"], {}) == []


def _table(spark, path, rows, schema, deletion_vectors=False):
    spark.createDataFrame(rows, schema).write.format("delta").mode("append").save(path)
    if deletion_vectors:
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES "
                  "('delta.enableDeletionVectors' = 'true')")


@pytest.fixture()
def lake(spark, tmp_path):
    """A lake and vault with a few versions per table, a cache, a report and an export."""
    config = make_config(str(tmp_path))
    config.set("sources", {"events": {"path": str(tmp_path / "raw"),
                                      "columns": {"user_id": "customer"}}})
    config.set("privacy.retention_hours", 0)
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump(config.data))
    p = Ids.of(config).value
    root, vault = config.path_of("lake.root"), config.path_of("lake.root") + "-vault"
    events = "user_id string, event_type string"
    _table(spark, f"{root}/bronze/events",
           [(p("alice"), "view"), (p("bob"), "buy"), (p("carol"), "view")], events)
    _table(spark, f"{root}/bronze/events", [(p("alice"), "buy"), (p("dave"), "view")], events)
    _table(spark, f"{root}/gold/user_segments",
           [(p(u), i % 2) for i, u in enumerate(["alice", "bob", "carol", "dave"])],
           "user_id string, segment int", deletion_vectors=True)
    _table(spark, f"{root}/gold/user_segments", [(p("erin"), 1)], "user_id string, segment int")
    _table(spark, f"{root}/gold/segment_history", [(p("bob"), 0), (p("dave"), 1)],
           "user_id string, segment int")
    _table(spark, f"{root}/meta/models", [("v1",)], "model_version string")
    _table(spark, f"{vault}/identity_map",
           [("events", u, p(u)) for u in ("alice", "bob", "carol")],
           "source string, user_id string, pseudonym string")
    _table(spark, f"{vault}/quarantine/events", [("alice", "missing event_time"),
                                                ("carol", "missing event_time")],
           "customer string, _reason string")
    cache = tmp_path / "petastorm" / "20260101-converter"
    cache.mkdir(parents=True)
    (cache / "part-0.parquet").write_bytes(b"rows")
    os.makedirs(f"{root}/reports")
    open(f"{root}/reports/persona_report.html", "w").write("<html></html>")
    write_audience(spark.createDataFrame(
        [(p(u), 0, "weekend", 0) for u in ("alice", "carol")],
        "user_id string, segment int, segment_name string, audience int"),
        f"{root}/exports/20260101T000000Z")
    ids = tmp_path / "ids.txt"
    ids.write_text(f"alice\n{p('bob')}\n\n  zed  \nalice\n")
    return config, str(conf), str(ids), p, root, vault, tmp_path


def _held(spark, path, values, version=None):
    """Rows of ``path`` (at ``version``) whose id columns hold one of ``values``."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    df = reader.load(path)
    columns = [c for c in ("user_id", "pseudonym", "customer") if c in df.columns]
    if not columns:
        return 0
    return df.where(reduce(lambda a, b: a | b, [F.col(c).isin(values) for c in columns])).count()


def test_forget_erases_users_everywhere_and_from_time_travel(spark, lake):
    config, conf, ids, p, root, vault, tmp_path = lake
    gone = ["alice", "bob", p("alice"), p("bob")]
    versions = {}
    for base in (root, vault):
        for table in delta_tables(spark, base):
            versions[f"{base}/{table}"] = Lake(spark, base).version(table)
    assert {os.path.relpath(t, tmp_path) for t in versions} == {
        "lake/bronze/events", "lake/gold/user_segments", "lake/gold/segment_history",
        "lake/meta/models", "lake-vault/identity_map", "lake-vault/quarantine/events"}

    assert main(["forget", "--conf", conf, "--ids", ids]) == 0

    for path, last in versions.items():
        assert _held(spark, path, gone) == 0, path
        for version in range(last + 1):  # every version before the erasure
            try:
                held = _held(spark, path, gone, version)
            except Exception:  # its files were vacuumed: time travel cannot read it
                continue
            assert held == 0, f"{path} version {version}"
    lake_ = Lake(spark, root)
    assert lake_.read("bronze/events").count() == 2  # carol and dave stay
    assert lake_.read("gold/user_segments").count() == 3
    assert not os.listdir(tmp_path / "petastorm")
    assert not os.path.exists(f"{root}/reports/persona_report.html")
    exported = spark.read.option("header", True).csv(f"{root}/exports/20260101T000000Z")
    assert [r["user_id"] for r in exported.collect()] == [p("carol")]

    (audit,) = lake_.read(AUDIT_TABLE).collect()
    assert audit["action"] == "forget" and audit["ids_requested"] == 3
    assert audit["users_found"] == 2 and audit["retention_hours"] == 0
    assert audit["rows_deleted"] == {
        "bronze/events": 3, "gold/user_segments": 2, "gold/segment_history": 1,
        "vault:identity_map": 2, "vault:quarantine/events": 1}
    assert audit["rows_deleted_total"] == 9
    assert not any(v in str(audit.asDict()) for v in gone + ["zed"])

    assert main(["forget", "--conf", conf, "--ids", ids]) == 0  # again: nothing left to delete
    last = lake_.read(AUDIT_TABLE).orderBy(F.desc("at")).first()
    assert lake_.read(AUDIT_TABLE).count() == 2
    assert last["rows_deleted_total"] == 0 and last["users_found"] == 0
    assert last["rows_deleted"] == {}
    assert lake_.read("bronze/events").count() == 2


def test_forget_refuses_a_missing_or_empty_ids_file(spark, tmp_path, capsys):
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump(make_config(str(tmp_path)).data))
    conf = str(conf)
    missing = tmp_path / "nowhere.txt"
    assert main(["forget", "--conf", conf, "--ids", str(missing)]) == 2
    assert error_line(capsys) == f"persona: error: --ids: no such file: {missing}"
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert main(["forget", "--conf", conf, "--ids", str(empty)]) == 2
    assert error_line(capsys) == (f"persona: error: --ids: {empty} holds no id "
                                  f"(one id per line)")
