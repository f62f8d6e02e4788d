"""The typed configuration: unknown keys and wrong values refused in one line, defaults
filled in, --set KEY=null, the generated reference, every shipped file valid."""
import glob
import os
import re

import pytest
import yaml

from persona.cli import main
from persona.config import Config
from persona.config.docs import markdown
from persona.config.fields import leaves
from persona.config.schema import Settings
from persona.errors import PersonaError

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL = os.path.join(ROOT, "conf", "local.yaml")


def error_line(capsys):
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert lines, "nothing on stderr"
    return lines[-1]


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_typo_in_yaml_names_the_nearest_key(tmp_path):
    path = write(tmp_path, "segment: {metod: gmm}\n")
    with pytest.raises(PersonaError) as error:
        Config.load(path)
    assert str(error.value) == ("unknown configuration key segment.metod "
                                "(did you mean segment.method?)")


def test_typo_in_set_names_the_nearest_key(tmp_path, capsys):
    assert main(["config", "--conf", LOCAL, "--set", "train.epoch=3"]) == 2
    assert error_line(capsys) == ("persona: error: unknown configuration key train.epoch "
                                  "(did you mean train.epochs?)")
    assert main(["config", "--conf", LOCAL, "--set", "sources.event.path=x.csv"]) == 2
    assert error_line(capsys) == ("persona: error: unknown configuration key sources.event "
                                  "(did you mean sources.events?)")


@pytest.mark.parametrize("setting, line", [
    ("segment.k=x", "segment.k must be an integer or auto, got 'x'"),
    ("segment.k=1", "segment.k must be an integer >= 2 or auto, got 1"),
    ("train.epochs=0", "train.epochs must be >= 1, got 0"),
    ("train.hidden=[16, -1]", "train.hidden must be a list of positive integers, got [16, -1]"),
    ("segment.method=em", "segment.method must be one of kmeans, gmm, dec, idec, got 'em'"),
    ("features.groups=[behaviour, txt]", "features.groups[1] must be one of behaviour, "
     "windows, diversity, event_mix, category, channel, time, outlook, items, profile, "
     "content, text, sequence, got 'txt'"),
    ("features.group_weights={outlook:2}", "--set features.group_weights: outlook:2 has no "
     "value (YAML needs a space after the colon, e.g. {outlook: 2})"),
    ("tags.churn.horizon_days=soon", "tags.churn.horizon_days must be an integer, got 'soon'"),
    ("sources.events.format=xlsx", "sources.events.format must be one of csv, json, parquet, "
     "delta, got 'xlsx'"),
])
def test_wrong_value_names_the_key(capsys, setting, line):
    assert main(["config", "--conf", LOCAL, "--set", setting]) == 2
    assert error_line(capsys) == f"persona: error: {line}"


def test_defaults_are_filled_in(tmp_path):
    config = Config.load(write(tmp_path, "lake: {root: x}\n"))
    assert config.get("segment.seed") == 7
    assert config.get("train.num_proc") == 2
    assert config.get("segment.gmm.sample") == 100_000
    assert config.get("features.groups")[0] == "behaviour"
    assert config.get("model.uri") is None
    assert config.data["segment"]["k"] == "auto"


def test_null_removes_a_key_or_a_source():
    config = Config.load(LOCAL, ["segment.k=null", "sources.content=null",
                                 "sources.users=null", "spark.conf.spark.driver.memory=null"])
    assert config.get("segment.k") == "auto"
    assert config.get("sources.content") is None and config.get("sources.users") is None
    assert set(config.section("sources")) == {"events"}
    assert "spark.driver.memory" not in config.get("spark.conf")
    assert config.get("spark.conf")["spark.sql.shuffle.partitions"] == 8
    config.set("segment.seed", 3)
    assert config.get("segment.seed") == 3
    config.set("segment.seed", None)
    assert config.get("segment.seed") == 7


def test_free_form_maps_take_dotted_keys_whole():
    config = Config.load(LOCAL, ["spark.conf.spark.executor.memory=8g",
                                 "features.input_versions={bronze/events: 3}"])
    assert config.get("spark.conf")["spark.executor.memory"] == "8g"
    assert config.get("features.input_versions") == {"bronze/events": 3}


def test_config_command_prints_the_effective_configuration(capsys):
    assert main(["config", "--conf", LOCAL, "--set", "segment.k=6"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["segment"]["k"] == 6
    assert printed["segment"]["n_init"] == 5
    assert printed["lake"]["root"] == "out/demo/lake"
    assert Config(printed).data == printed


def test_docs_are_not_stale():
    with open(os.path.join(ROOT, "docs", "configuration.md"), encoding="utf-8") as fh:
        assert fh.read() == markdown(), "run `make docs`"


def test_every_key_read_in_the_code_is_in_the_schema():
    known = {key for key, _, _ in leaves(Settings)}
    pattern = re.compile(r"config\.(?:get|path_of|section)\(\s*f?\"([^\"]+)\"")
    read = set()
    for path in glob.glob(os.path.join(ROOT, "lib", "persona", "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as fh:
            read |= set(pattern.findall(fh.read()))
    # The scanner sees reads of each kind: get, path_of, section and an f-string.
    assert {"segment.k", "lake.root", "segment.dec", "registry.{kind}"} <= read
    # Keys under a mapping of sections (tags.<name>.x) or with a variable part ({kind}).
    generic = {re.sub(r"\{[^}]*\}", "<name>", k) for k in read}
    missing = sorted(k for k in generic
                     if k not in known and not any(re.fullmatch(re.escape(k).replace(
                         "<name>", "[^.]+"), x) for x in known))
    assert not missing


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "conf", "*.yaml"))))
def test_every_shipped_configuration_validates(path):
    config = Config.load(path)
    assert config.get("lake.root")
    assert config.get("sources.events.path")


def test_local_configuration_keeps_its_values():
    config = Config.load(LOCAL)
    assert (config.get("train.epochs"), config.get("segment.k"),
            config.get("features.sequence_length")) == (30, "auto", 20)
    mapping = config.get("sources.events.columns")
    assert not set(mapping) & {"session_id", "channel", "quantity", "item_id", "category",
                               "amount"}


def test_make_config_goes_through_the_same_checks(tmp_path):
    from tests.conftest import make_config

    assert make_config(str(tmp_path)).get("train.epochs") == 3
    with pytest.raises(PersonaError, match="unknown configuration key segment.kk"):
        make_config(str(tmp_path), segment={"kk": 3})


def test_unmapped_optional_columns_are_optional(spark, tmp_path):
    from persona.ingest.sources import configured_sources
    from persona.ingest.validation import SOURCE_FILE, accepted, validate
    from pyspark.sql import functions as F

    events = tmp_path / "events.csv"
    events.write_text("user_id,event_time,event_type\nu1,2025-01-01 10:00:00,view\n")
    config = Config.load(LOCAL, [f"sources.events.path={events}"])
    spec = configured_sources(config.section("sources"))[0]
    raw = spark.read.options(**spec.options).csv(spec.path)
    good = accepted(validate(raw.withColumn(SOURCE_FILE, F.lit("f")), spec), spec).first()
    assert good["user_id"] == "u1" and good["session_id"] is None and good["channel"] is None
