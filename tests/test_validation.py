"""Ingest validation on hand-made raw rows: typed columns, reasons, clear errors."""
import pytest

from persona.errors import PersonaError
from persona.ingest.sources import SourceSpec, configured_sources
from persona.ingest.validation import REASON, SOURCE_FILE, accepted, rejected, validate

pytestmark = pytest.mark.unit

RAW_COLUMNS = ["uid", "ts", "kind", "price", "qty"]
RAW_ROWS = [
    ("u1", "2025-01-02 10:00:00", "purchase", "10.5", "2"),   # good
    ("", "2025-01-02 11:00:00", "view", None, None),          # missing user_id
    ("u2", "yesterday", "view", None, None),                   # unparseable event_time
    ("u3", "2025-01-03 09:30:00", "purchase", "12,50EUR", "1"),  # amount not a number
    ("u4", "2025-01-03 09:30:00", None, None, None),           # missing event_type
    ("u5", "2025-01-04 08:00:00", "purchase", "-3", "1"),      # caught by a reject rule
    ("  u6 ", "2025-01-05 07:00:00", "view", "", ""),          # good, trimmed, blanks → null
]


def events_spec(**extra):
    section = {
        "path": "unused",
        "timestamp_format": "yyyy-MM-dd HH:mm:ss",
        "columns": {"user_id": "uid", "event_time": "ts", "event_type": "kind",
                    "amount": "price", "quantity": "qty"},
        "reject": [{"reason": "negative amount", "when": "CAST(price AS DOUBLE) < 0"}],
    }
    section.update(extra)
    return SourceSpec.from_config("events", section)


def raw_frame(spark):
    from pyspark.sql import functions as F

    return spark.createDataFrame(RAW_ROWS, RAW_COLUMNS).withColumn(SOURCE_FILE, F.lit("f.csv"))


def test_each_bad_row_gets_its_reason(spark):
    validated = validate(raw_frame(spark), events_spec())
    reasons = {r["uid"]: r[REASON] for r in validated.select("uid", REASON).collect()}
    assert reasons == {
        "u1": None,
        "": "missing user_id",
        "u2": "unparseable event_time",
        "u3": "amount is not a number",
        "u4": "missing event_type",
        "u5": "negative amount",
        "  u6 ": None,
    }


def test_accepted_rows_are_typed_and_counts_reconcile(spark):
    spec = events_spec()
    validated = validate(raw_frame(spark), spec)
    good = accepted(validated, spec).orderBy("user_id").collect()
    bad = rejected(validated)
    assert len(good) + bad.count() == len(RAW_ROWS)
    assert [r["user_id"] for r in good] == ["u1", "u6"]
    assert good[0]["amount"] == 10.5 and good[0]["quantity"] == 2.0
    assert str(good[0]["event_time"]) == "2025-01-02 10:00:00"
    assert good[1]["amount"] is None and good[1]["category"] is None
    assert set(bad.columns) == set(RAW_COLUMNS) | {REASON, SOURCE_FILE}
    assert bad.where("uid = 'u3'").first()["price"] == "12,50EUR"  # the raw value is kept


def test_expression_mapping(spark):
    spec = events_spec(columns={"user_id": {"expr": "upper(uid)"}, "event_time": "ts",
                                "event_type": "kind",
                                "amount": {"expr": "CAST(price AS DOUBLE) * CAST(qty AS DOUBLE)"}})
    good = accepted(validate(raw_frame(spark), spec), spec).where("user_id = 'U1'").first()
    assert good["amount"] == 21.0


def test_missing_source_column_is_one_clear_error(spark):
    spec = events_spec(columns={"user_id": "customer", "event_time": "ts", "event_type": "kind"})
    with pytest.raises(PersonaError, match="column 'customer' \\(mapped to user_id\\) not found"):
        validate(raw_frame(spark), spec)


def test_bad_expression_and_rule_are_clear_errors(spark):
    spec = events_spec(columns={"user_id": {"expr": "nosuch(uid"}, "event_time": "ts",
                                "event_type": "kind"})
    with pytest.raises(PersonaError, match="columns.user_id: invalid expression"):
        validate(raw_frame(spark), spec)
    spec = events_spec(reject=[{"reason": "x", "when": "nosuchcol > 1"}])
    with pytest.raises(PersonaError, match="reject: invalid condition"):
        validate(raw_frame(spark), spec)


def test_source_specs_check_configuration():
    with pytest.raises(PersonaError, match="events source is required"):
        configured_sources({"users": {"path": "x"}})
    with pytest.raises(PersonaError, match="format must be one of"):
        SourceSpec.from_config("events", {"path": "x", "format": "xlsx"})
    with pytest.raises(PersonaError, match="unknown canonical column"):
        SourceSpec.from_config("events", {"path": "x", "columns": {"colour": "c"}})
    users = SourceSpec.from_config("users", {"path": "x", "attributes": {
        "categorical": ["gender"], "numeric": ["age"]}})
    assert users.types == {"user_id": "string", "gender": "string", "age": "double"}
    assert [s.name for s in configured_sources({"users": {"path": "u"},
                                                "events": {"path": "e"}})] == ["events", "users"]


def test_unmapped_optional_columns_are_read_by_name(spark):
    from pyspark.sql import functions as F

    spec = SourceSpec.from_config("content", {"path": "unused"})
    raw = spark.createDataFrame([("u1", "2025-01-01 10:00:00", "nice", "4")],
                                "user_id string, event_time string, text string, rating string")
    good = accepted(validate(raw.withColumn(SOURCE_FILE, F.lit("f")), spec), spec).first()
    assert (good["text"], good["rating"]) == ("nice", 4.0)


def test_raw_columns_that_collide_once_delta_safe_keep_apart(spark):
    from persona.ingest.validation import raw_names

    assert raw_names(["user id", "user_id", "User_ID", "_reason"], (REASON,)) == [
        "user_id", "user_id_2", "User_ID_3", "_reason_2"]
    raw = spark.createDataFrame(
        [("u1", "x", "2025-01-02 10:00:00", "view", "why", "f.csv")],
        ["user_id", "user id", "event_time", "event_type", REASON, SOURCE_FILE])
    bad = validate(raw, SourceSpec.from_config("events", {
        "path": "unused", "reject": [{"reason": "all", "when": "true"}]}))
    assert rejected(bad).first().asDict() == {
        "user_id": "u1", "user_id_2": "x", "event_time": "2025-01-02 10:00:00",
        "event_type": "view", "_reason_2": "why", SOURCE_FILE: "f.csv", REASON: "all"}
