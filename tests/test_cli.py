"""The command line: usage, --set overrides, and one clear error line on bad input."""
import os

import pytest
import yaml

from persona.cli import main
from persona.config import Config
from persona.errors import PersonaError
from tests.conftest import make_config


def write_config(tmp_path, events_path, **columns):
    config = make_config(str(tmp_path))
    config.set("sources", {"events": {"path": str(events_path), "format": "csv",
                                      "columns": columns or {}}})
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(config.data))
    return str(path)


def error_line(capsys):
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert lines, "nothing on stderr"
    return lines[-1]


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("generate", "run", "ingest", "features", "train", "embed", "segment"):
        assert command in out


def test_set_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("segment: {k: auto}\ntrain: {epochs: 3}\n")
    config = Config.load(str(path), ["segment.k=8", "train.hidden=[16, 8]", "lake.root=x/y"])
    assert config.get("segment.k") == 8
    assert config.get("train.hidden") == [16, 8]
    assert config.get("train.epochs") == 3
    assert config.get("lake.root") == "x/y"
    with pytest.raises(PersonaError, match="--set expects key=value"):
        Config.load(str(path), ["segment.k"])
    with pytest.raises(PersonaError, match="must be an integer"):
        Config.load(str(path), ["train.epochs=many"]).integer("train.epochs")


def test_missing_configuration_file(capsys):
    assert main(["ingest", "--conf", "no/such/file.yaml"]) == 2
    assert error_line(capsys).startswith("persona: error: cannot read configuration")


def test_unreadable_source_path(spark, tmp_path, capsys):
    conf = write_config(tmp_path, tmp_path / "nowhere")
    assert main(["ingest", "--conf", conf]) == 2
    line = error_line(capsys)
    assert line.startswith("persona: error: sources.events.path: cannot read")
    assert "nowhere" in line


def test_missing_required_column(spark, tmp_path, capsys):
    events = tmp_path / "events.csv"
    events.write_text("customer,ts,kind\nu1,2025-01-01 10:00:00,view\n")
    conf = write_config(tmp_path, events, user_id="CustomerID", event_time="ts",
                        event_type="kind")
    assert main(["ingest", "--conf", conf]) == 2
    line = error_line(capsys)
    assert "column 'CustomerID' (mapped to user_id) not found" in line
    assert "available: customer, ts, kind" in line


def test_stage_before_its_input_exists(spark, tmp_path, capsys):
    conf = write_config(tmp_path, tmp_path / "events.csv")
    assert main(["segment", "--conf", conf]) == 2
    assert "gold/user_embeddings not found" in error_line(capsys)
    assert not os.path.exists(tmp_path / "lake" / "gold")


def test_bad_segment_k(spark, tmp_path, capsys):
    from pyspark.sql import Row

    from persona.lake.tables import Lake

    conf = write_config(tmp_path, tmp_path / "events.csv")
    Lake(spark, str(tmp_path / "lake")).overwrite(
        spark.createDataFrame([Row(user_id=f"u{i}", embedding=[float(i), 1.0], model_version="m")
                               for i in range(3)]),
        "gold/user_embeddings")
    assert main(["segment", "--conf", conf, "--set", "segment.k=five"]) == 2
    assert "segment.k must be an integer" in error_line(capsys)


def test_every_row_rejected_stops_ingest(spark, tmp_path, capsys):
    events = tmp_path / "events.csv"
    events.write_text("uid,ts,kind\nu1,01/02/2025,view\nu2,03/02/2025,view\n")
    conf = write_config(tmp_path, events, user_id="uid", event_time="ts", event_type="kind")
    assert main(["ingest", "--conf", conf]) == 2
    line = error_line(capsys)
    assert "sources.events: every row was rejected (most often 'unparseable event_time', " \
           "2 of 2)" in line


def test_degenerate_features_stop_with_a_clear_message(spark, tmp_path, capsys):
    events = tmp_path / "events.csv"
    events.write_text("user_id,event_time,event_type\n" + "".join(
        f"u{i},2025-01-01 10:00:00,view\n" for i in range(3)))
    conf = write_config(tmp_path, events)
    assert main(["ingest", "--conf", conf]) == 0
    assert main(["features", "--conf", conf]) == 2
    assert "features look broken: " in error_line(capsys)
