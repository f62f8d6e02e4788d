"""The features stage with the items group, on a small lake: its columns, and the group
skipped with its reason when events name no item."""
from datetime import datetime, timedelta

import pytest

from persona.lake.tables import Lake
from persona.pipeline import run_single
from persona.stages.features import FEATURES_TABLE, feature_groups
from tests.conftest import make_config
from tests.test_tag_stage import Lines

pytestmark = pytest.mark.stage

EVENTS = ("user_id string, event_time timestamp, event_type string, item_id string, "
          "category string, quantity double, amount double, session_id string, "
          "channel string")


def _lake(spark, tmp_path, with_items: bool):
    """bronze/events of 6 users buying 2 to 4 of 4 items, in 1 to 4 sessions, with or
    without item ids."""
    config = make_config(str(tmp_path), features={"groups": ["behaviour", "items"],
                                                  "item_factors": 3})
    start = datetime(2025, 1, 1)
    rows = [(f"u{u}", start + timedelta(days=u + 3 * i), "purchase",
             f"i{(u + i) % 4}" if with_items else None, None, 1.0 + u, 10.0 * u + i,
             f"s{u}-{i % (1 + u % 4)}", None)
            for u in range(6) for i in range(2 + u % 3)]
    Lake(spark, config.path_of("lake.root")).overwrite(
        spark.createDataFrame(rows, EVENTS), "bronze/events")
    return config


def test_items_group_gives_the_configured_factors(spark, tmp_path):
    config = _lake(spark, tmp_path, with_items=True)
    run_single("features", config)
    silver = Lake(spark, config.path_of("lake.root")).read(FEATURES_TABLE)
    assert feature_groups(silver)["items"] == ["item_0", "item_1", "item_2"]
    assert silver.count() == 6
    assert silver.where("item_0 IS NULL OR item_1 IS NULL OR item_2 IS NULL").count() == 0


def test_items_group_is_skipped_when_events_name_no_item(spark, tmp_path):
    config = _lake(spark, tmp_path, with_items=False)
    with Lines("features") as messages:
        run_single("features", config)
    assert "items group skipped: events have no item_id values" in messages
    silver = Lake(spark, config.path_of("lake.root")).read(FEATURES_TABLE)
    assert list(feature_groups(silver)) == ["behaviour"]
