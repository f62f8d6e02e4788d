"""The command line: usage, --set overrides, and one clear error line on bad input."""
import os
import re

import pytest
import yaml

from persona.cli import main
from persona.config import Config
from persona.errors import PersonaError
from tests.conftest import make_config

pytestmark = pytest.mark.stage


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
        Config.load(str(path), ["train.epochs=many"])


def test_missing_configuration_file(capsys):
    assert main(["ingest", "--conf", "no/such/file.yaml"]) == 2
    assert error_line(capsys).startswith("persona: error: cannot read configuration")


def test_unreadable_source_path(spark, tmp_path, capsys):
    conf = write_config(tmp_path, tmp_path / "nowhere")
    assert main(["ingest", "--conf", conf]) == 2
    line = error_line(capsys)
    assert line.startswith("persona: error: sources.events.path: cannot read")
    assert "nowhere" in line


def test_source_without_a_path(spark, tmp_path, capsys):
    conf = write_config(tmp_path, tmp_path / "events.csv")
    assert main(["ingest", "--conf", conf, "--set", "sources.events.path=null"]) == 2
    assert error_line(capsys) == "persona: error: sources.events.path is missing"


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


def only_error_line(capsys):
    """The one ``persona: error:`` line on stderr, after checking that no trace came with it."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert not [l for l in err.splitlines() if l.lstrip().startswith("at ")]
    errors = [l for l in err.splitlines() if l.startswith("persona: error:")]
    assert len(errors) == 1, err
    return errors[0]


def write_gzip_events(folder, truncated: str):
    """Two gzipped csv files of events, the one named ``truncated`` cut short."""
    import gzip

    folder.mkdir()
    rows = "".join(f"u{i % 7},2025-01-0{1 + i % 9} 10:00:00,view\n" for i in range(20000))
    for name in ("2025-01-01.csv.gz", "2025-01-02.csv.gz"):
        data = gzip.compress(("user_id,event_time,event_type\n" + rows).encode())
        (folder / name).write_bytes(data[: len(data) // 2] if name == truncated else data)


def test_truncated_gzip_file_is_named(spark, tmp_path, capsys):
    write_gzip_events(tmp_path / "events", truncated="2025-01-02.csv.gz")
    conf = write_config(tmp_path, tmp_path / "events")
    assert main(["ingest", "--conf", conf]) == 2
    assert only_error_line(capsys) == (
        f"persona: error: sources.events: cannot read {tmp_path}/events/2025-01-02.csv.gz: "
        f"truncated or corrupt gzip file")


def test_truncated_gzip_file_leaves_one_line_on_the_console(tmp_path):
    """The whole process, Spark's JVM included: one error line, no Java stack."""
    import subprocess
    import sys

    write_gzip_events(tmp_path / "events", truncated="2025-01-01.csv.gz")
    conf = write_config(tmp_path, tmp_path / "events")
    done = subprocess.run([sys.executable, "-m", "persona.cli", "ingest", "--conf", conf],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[-1] == (f"persona: error: sources.events: cannot read "
                         f"{tmp_path}/events/2025-01-01.csv.gz: truncated or corrupt gzip file")
    persona_log = re.compile(r"^\d\d:\d\d:\d\d persona persona\.\w+ \| ")
    assert [l for l in lines[:-1] if not persona_log.match(l)] == []


def test_concurrent_writer_is_one_line(spark, tmp_path, capsys, monkeypatch):
    """Delta refuses the commit of bronze/events: another run committed to it first."""
    from py4j.protocol import Py4JJavaError
    from pyspark.sql import DataFrameWriter

    events = tmp_path / "events.csv"
    events.write_text("user_id,event_time,event_type\nu1,2025-01-01 10:00:00,view\n")
    conf = write_config(tmp_path, events)
    save = DataFrameWriter.save

    def conflicting_save(self, path=None, **options):
        if str(path).endswith("bronze/events"):
            conflict = spark._jvm.io.delta.exceptions.ConcurrentAppendException(
                "Files were added to the root of the table by a concurrent update.")
            raise Py4JJavaError("An error occurred while calling o1.save.\n", conflict)
        return save(self, path, **options)

    monkeypatch.setattr(DataFrameWriter, "save", conflicting_save)
    assert main(["ingest", "--conf", conf]) == 2
    assert only_error_line(capsys) == (
        f"persona: error: another run is writing bronze/events under "
        f"lake.root={tmp_path}/lake: try again when it ends")


def test_unexpected_python_error_is_one_line_and_debug_shows_the_trace(
        tmp_path, capsys, monkeypatch):
    import persona.pipeline

    def fail(stage, config):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(persona.pipeline, "run_single", fail)
    conf = write_config(tmp_path, tmp_path / "events.csv")
    assert main(["ingest", "--conf", conf]) == 1
    assert only_error_line(capsys) == ("persona: error: RuntimeError: disk on fire "
                                       "(run with PERSONA_DEBUG=1 for the full trace)")
    monkeypatch.setenv("PERSONA_DEBUG", "1")
    assert main(["ingest", "--conf", conf]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in fail" in err
    assert err.splitlines()[-1] == "persona: error: RuntimeError: disk on fire"


def test_unexpected_java_error_is_the_first_line_of_its_innermost_cause(
        spark, tmp_path, capsys, monkeypatch):
    from pyspark.sql import functions as F

    import persona.pipeline

    def fail(stage, config):
        spark.range(1).select(F.raise_error(F.lit("disk on fire\nsecond line"))).collect()

    monkeypatch.setattr(persona.pipeline, "run_single", fail)
    conf = write_config(tmp_path, tmp_path / "events.csv")
    assert main(["ingest", "--conf", conf]) == 1
    line = only_error_line(capsys)
    assert line.startswith("persona: error: ")
    assert line.endswith("disk on fire (run with PERSONA_DEBUG=1 for the full trace)")


def test_update_refuses_a_segmentation_it_cannot_keep(tmp_path, capsys):
    conf = write_config(tmp_path, tmp_path / "events.csv")
    assert main(["update", "--conf", conf, "--set", "segment.method=gmm"]) == 2
    assert error_line(capsys) == (
        "persona: error: persona update assigns with the K-Means model in use; "
        "segment.method=gmm, segment.manifold=none fit new segments on every run: "
        "use `persona run`")
