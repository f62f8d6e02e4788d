"""Pseudonyms: the keyed hash in Spark equals Python's HMAC-SHA256; the key's sources."""
import hashlib
import hmac
import os
import stat

import pytest
from pyspark.sql import functions as F

from persona.errors import PersonaError
from persona.privacy.keys import load_key
from persona.privacy.pseudonyms import Ids, pseudonym, pseudonym_column
from tests.conftest import make_config

pytestmark = pytest.mark.unit

IDS = ["u0000001", "Zoë → 北京", "", "12346", " spaced "]


@pytest.mark.parametrize("key", [b"k" * 16, b"0123456789abcdef" * 4, b"long key " * 20],
                         ids=["short", "one block", "longer than a block"])
def test_spark_hmac_equals_python_hmac(spark, key):
    df = spark.createDataFrame([(i,) for i in IDS] + [(None,)], "user_id string")
    got = [r[0] for r in df.select(pseudonym_column(F.col("user_id"), key)).collect()]
    expected = [hmac.new(key, i.encode("utf-8"), hashlib.sha256).hexdigest() for i in IDS]
    assert got == expected + [None]
    assert [pseudonym(key, i) for i in IDS] == expected
    assert all(len(p) == 64 and p == p.lower() for p in expected)


def test_the_key_stays_out_of_query_plans(spark):
    key = b"plan secret key!"
    padded = key.ljust(64, b"\0")
    blocks = [bytes(b ^ pad for b in padded).hex().upper() for pad in (0x36, 0x5C)]
    df = spark.createDataFrame([("u1",)], "user_id string").select(
        pseudonym_column(F.col("user_id"), key).alias("p"))
    plans = df._jdf.queryExecution().toString()  # every plan, as the UI and event log show
    assert "redacted" in plans and not any(b in plans for b in blocks)


def test_numeric_ids_are_hashed_as_their_text(spark):
    key = b"k" * 16
    df = spark.createDataFrame([(12346,)], "customer long")
    assert df.select(Ids(key).column(F.col("customer"))).first()[0] == pseudonym(key, "12346")
    assert Ids(None).value("12346") == "12346"


def test_key_from_the_environment_first(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "  environment-key-123456  ")
    (tmp_path / "key").write_text("file-key-0123456789")
    config = make_config(str(tmp_path), privacy={"key_env": "MY_KEY",
                                                 "key_file": str(tmp_path / "key")})
    assert load_key(config) == b"environment-key-123456"
    monkeypatch.delenv("MY_KEY")
    assert load_key(config) == b"file-key-0123456789"


def test_key_made_on_first_use_readable_by_its_owner_only(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("PERSONA_KEY", raising=False)
    path = tmp_path / "keys" / "demo.key"
    config = make_config(str(tmp_path), privacy={"key_file": str(path), "create_key": True})
    with caplog.at_level("INFO", logger="persona"):
        key = load_key(config)
    assert len(bytes.fromhex(key.decode())) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert key.decode() not in caplog.text
    assert load_key(config) == key  # made once, then read


def test_missing_and_short_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("PERSONA_KEY", raising=False)
    config = make_config(str(tmp_path))
    with pytest.raises(PersonaError, match=r"no key was found: set \$PERSONA_KEY or "
                                           r"privacy.key_file"):
        load_key(config)
    monkeypatch.setenv("PERSONA_KEY", "short")
    with pytest.raises(PersonaError, match=r"\$PERSONA_KEY is too short: 5 bytes"):
        load_key(config)
