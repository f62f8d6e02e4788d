"""Pseudonymous ids at ingest, personal columns, the vault, and `persona privacy-check`."""
import os
import shutil

import pytest
import yaml
from pyspark.sql import functions as F

from persona.cli import main
from persona.config import Config
from persona.lake.tables import Lake
from persona.privacy.pseudonyms import pseudonym
from persona.privacy.scan import needles, table_findings
from persona.runtime.tracking import tracking_uri
from tests.conftest import make_config

pytestmark = pytest.mark.stage

USERS = [f"cust{i:03d}" for i in range(12)]


def write_sources(folder):
    """12 users with varied events (two rows rejected) and a users file with an email
    (dropped), a phone (hashed) and a plan."""
    os.makedirs(folder, exist_ok=True)
    lines = ["user_id,event_time,event_type,amount"]
    for i, user in enumerate(USERS):
        for j in range(1 + i % 4):
            kind = "purchase" if (i + j) % 2 else "view"
            lines.append(f"{user},2025-01-{1 + (i * 3 + j * 5) % 27:02d} 1{j}:00:00,{kind},"
                         f"{(i + 1) * (j + 2) if kind == 'purchase' else ''}")
    lines += ["cust000,not a time,view,", ",2025-01-05 10:00:00,view,"]
    with open(os.path.join(folder, "events.csv"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(os.path.join(folder, "users.csv"), "w") as fh:
        fh.write("user_id,email,phone,plan\n" + "".join(
            f"{u},{u}@example.org,+44 7700 900{i:03d},{'pro' if i % 3 else 'free'}\n"
            for i, u in enumerate(USERS)))


def configuration(tmp, **privacy):
    data = str(tmp / "data")
    config = make_config(str(tmp), features={"groups": ["behaviour"]}, privacy=privacy)
    config.set("sources", {
        "events": {"path": f"{data}/events.csv", "format": "csv"},
        "users": {"path": f"{data}/users.csv", "format": "csv", "pii": ["email"],
                  "pii_hashed": ["phone"], "attributes": {"categorical": ["plan"]}}})
    path = tmp / "conf.yaml"
    path.write_text(yaml.safe_dump(config.data))
    return str(path)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """A lake ingested (with the identity map) and featured from the hand-made sources."""
    tmp = tmp_path_factory.mktemp("privacy")
    write_sources(tmp / "data")
    conf = configuration(tmp, identity_map=True)
    assert main(["ingest", "--conf", conf]) == 0
    assert main(["features", "--conf", conf]) == 0
    config = Config.load(conf)
    return config, conf, Lake(spark, config.path_of("lake.root")), tmp


def key():
    return os.environ["PERSONA_KEY"].encode()


def ids(lake, table):
    return {r[0] for r in lake.read(table).select("user_id").distinct().collect()}


def test_every_user_id_in_the_lake_is_a_pseudonym(lake):
    _, _, store, _ = lake
    expected = {pseudonym(key(), u) for u in USERS}
    assert ids(store, "bronze/events") == expected
    assert ids(store, "bronze/users") == expected  # users and events join as before
    assert ids(store, "silver/user_features") == expected


def test_personal_columns_dropped_or_hashed(lake):
    _, _, store, _ = lake
    users = store.read("bronze/users")
    assert "email" not in users.columns
    phones = {r["user_id"]: r["phone"] for r in users.collect()}
    assert phones[pseudonym(key(), "cust007")] == pseudonym(key(), "+44 7700 900007")


def test_quarantine_and_identity_map_in_the_vault(lake, spark):
    config, _, store, _ = lake
    vault = Lake(spark, config.path_of("lake.root") + "-vault")
    assert not store.exists("quarantine/events")
    assert vault.read("quarantine/events").count() == 2
    pairs = vault.read("identity_map")
    assert pairs.count() == 2 * len(USERS)  # events and users, one row per raw id
    row = pairs.where((F.col("source") == "users") & (F.col("user_id") == "cust003")).first()
    assert row["pseudonym"] == pseudonym(key(), "cust003")


def test_pseudonyms_stable_across_runs_and_other_with_another_key(lake, spark, monkeypatch,
                                                                   tmp_path):
    _, conf, store, tmp = lake
    before = ids(store, "bronze/events")
    assert main(["ingest", "--conf", conf]) == 0
    assert ids(store, "bronze/events") == before
    vault = Lake(spark, store.root + "-vault")
    assert vault.read("identity_map").count() == 2 * len(USERS)  # the same rows again
    other = tmp_path / "other"
    shutil.copytree(tmp / "data", other / "data")
    conf_other = configuration(other)
    monkeypatch.setenv("PERSONA_KEY", "another-key-for-the-same-ids")
    assert main(["ingest", "--conf", conf_other, "--set", "sources.users=null"]) == 0
    again = Lake(spark, str(other / "lake"))
    assert ids(again, "bronze/events").isdisjoint(before)
    assert not Lake(spark, str(other / "lake-vault")).exists("identity_map")  # not asked


def test_pseudonymize_off_keeps_ids_and_quarantine_in_the_lake(spark, tmp_path):
    write_sources(tmp_path / "data")
    conf = configuration(tmp_path, pseudonymize=False)
    assert main(["ingest", "--conf", conf, "--set", "sources.users=null"]) == 0
    store = Lake(spark, str(tmp_path / "lake"))
    assert ids(store, "bronze/events") == set(USERS)
    assert store.read("quarantine/events").count() == 2


def error_line(capsys):
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return lines[-1]


def test_cli_missing_key(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PERSONA_KEY", raising=False)
    write_sources(tmp_path / "data")
    assert main(["ingest", "--conf", configuration(tmp_path)]) == 2
    assert error_line(capsys) == ("persona: error: privacy.pseudonymize is on but no key was "
                                  "found: set $PERSONA_KEY or privacy.key_file")


def test_cli_short_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PERSONA_KEY", "tooshort")
    write_sources(tmp_path / "data")
    assert main(["ingest", "--conf", configuration(tmp_path)]) == 2
    assert error_line(capsys) == ("persona: error: the key in $PERSONA_KEY is too short: 8 "
                                  "bytes, at least 16 are needed (e.g. 64 hex digits)")


def test_cli_unknown_personal_column(tmp_path, capsys):
    write_sources(tmp_path / "data")
    conf = configuration(tmp_path)
    assert main(["ingest", "--conf", conf, "--set", "sources.events.pii=[mail]"]) == 2
    assert error_line(capsys).startswith("persona: error: sources.events.pii: column 'mail' "
                                         "not found in ")


def test_privacy_check_clean_then_finds_a_planted_id(lake, spark, capsys):
    config, conf, store, _ = lake
    assert main(["privacy-check", "--conf", conf]) == 0
    out = capsys.readouterr().out
    assert "privacy-check: clean: 12 raw user ids" in out
    planted = spark.createDataFrame([("a note on cust005 and cust006", 1)], "note string, n int")
    store.overwrite(planted, "gold/planted")
    try:
        assert main(["privacy-check", "--conf", conf]) == 2
        assert error_line(capsys) == ("persona: error: privacy-check: 2 raw user ids found "
                                      "in gold/planted.note")
    finally:
        shutil.rmtree(store.path("gold/planted"))


def test_privacy_check_finds_an_id_in_an_artifact(lake, capsys):
    config, conf, _, _ = lake
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(config))
    root = mlflow.get_experiment_by_name(config.get("mlflow.experiment")).artifact_location
    path = os.path.join(root.replace("file://", ""), "notes", "ids.json")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as fh:
        fh.write('{"user": "cust011@example.org"}\n')
    try:
        assert main(["privacy-check", "--conf", conf]) == 2
        line = error_line(capsys)
        assert line.startswith("persona: error: privacy-check: 1 values of users.email found "
                               "in file:")
        assert line.endswith("notes/ids.json")
    finally:
        shutil.rmtree(os.path.dirname(path))


def test_short_numbers_only_in_user_id_cells(spark, tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("user_id,event_time,event_type\n12346,2025-01-01 10:00:00,view\n"
                      "u-00000042,2025-01-01 10:00:00,view\n")
    config = make_config(str(tmp_path))
    config.set("sources", {"events": {"path": str(events), "format": "csv"}})
    looked_for = needles(spark, config)
    table = spark.createDataFrame([("12346", "12346", "x u-00000042,y"), ("x", "12346 7", "")],
                                  "user_id string, item_id string, note string")
    other = spark.createDataFrame([("u-00000042", 12346)], "user_id string, n long")
    numbers = spark.createDataFrame([(12346,)], "n long")  # no text column: nothing to read
    found = {(f.where, f.count) for f in table_findings(
        {"t": table, "numbers": numbers, "other": other}, looked_for)}
    assert found == {("t.user_id", 1), ("t.note", 1), ("other.user_id", 1)}


@pytest.mark.parametrize("overrides, line", [
    (["sources.events.pii=[event_type]"],
     "sources.events.pii: 'event_type' is read as event_type: a dropped column cannot be "
     "mapped (list it in pii_hashed to keep its keyed hash)"),
    (["sources.events.pii_hashed=[amount]"],
     "sources.events.pii_hashed: 'amount' is read as amount, a double: only text columns "
     "can be hashed"),
    (["sources.events.pii=[user_id]", "privacy.pseudonymize=false"],
     "sources.events.pii: 'user_id' is the user id: set privacy.pseudonymize: true to "
     "replace it by a pseudonym"),
])
def test_cli_personal_columns_that_cannot_be_protected(tmp_path, capsys, overrides, line):
    write_sources(tmp_path / "data")
    sets = [a for o in ["sources.users=null", *overrides] for a in ("--set", o)]
    assert main(["ingest", "--conf", configuration(tmp_path), *sets]) == 2
    assert error_line(capsys) == f"persona: error: {line}"


def test_cli_artifacts_only_a_server_serves(spark, tmp_path, capsys):
    import mlflow

    write_sources(tmp_path / "data")
    conf = configuration(tmp_path)
    config = Config.load(conf)
    mlflow.set_tracking_uri(tracking_uri(config))
    mlflow.create_experiment(config.get("mlflow.experiment"),
                             artifact_location="mlflow-artifacts:/persona")
    assert main(["privacy-check", "--conf", conf, "--set", "sources.users=null"]) == 2
    assert error_line(capsys) == (
        "persona: error: privacy-check: cannot read the MLflow artifacts at "
        "mlflow-artifacts:/persona: set mlflow.artifact_location to a file system or object "
        "store path the check can read")


def test_cli_unreadable_key_file(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PERSONA_KEY", raising=False)
    write_sources(tmp_path / "data")
    folder = tmp_path / "keys"
    folder.mkdir()
    assert main(["ingest", "--conf", configuration(tmp_path),
                 "--set", f"privacy.key_file={folder}"]) == 2
    assert error_line(capsys) == (f"persona: error: privacy.key_file: cannot read {folder}: "
                                  f"Is a directory")


def test_cli_hashed_column_without_key(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PERSONA_KEY", raising=False)
    write_sources(tmp_path / "data")
    assert main(["ingest", "--conf", configuration(tmp_path, pseudonymize=False)]) == 2
    assert error_line(capsys) == ("persona: error: sources.users.pii_hashed is set but no key "
                                  "was found: set $PERSONA_KEY or privacy.key_file")
