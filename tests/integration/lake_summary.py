"""What a lake written by the jobs holds, read without Spark: each Delta table's current files
from its JSON commit log, read with pyarrow.

A second reader of the tables, and no JVM to start in the test process. It reads the plain
tables Persona writes (no partitions, checkpoints or deletion vectors) and says so when it
meets anything else. The test lakes hold a few hundred users, so reading them whole is bounded.
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def read_delta(table: Path) -> pd.DataFrame:
    """The current version of the Delta table at ``table``."""
    log = table / "_delta_log"
    if any(log.glob("*.checkpoint*.parquet")):
        raise NotImplementedError(f"{table}: Delta checkpoints are not read here")
    files: dict[str, None] = {}
    schema = None
    for commit in sorted(log.glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                add = action["add"]
                if add.get("partitionValues") or add.get("deletionVector"):
                    raise NotImplementedError(f"{table}: partitions and deletion vectors "
                                              "are not read here")
                files[add["path"]] = None
            elif "remove" in action:
                files.pop(action["remove"]["path"], None)
            elif "metaData" in action:
                schema = json.loads(action["metaData"]["schemaString"])
    columns = [field["name"] for field in schema["fields"]]
    parts = [pq.read_table(table / unquote(path)) for path in files]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pa.concat_tables(parts, promote=True).to_pandas()[columns]


def summarize(root: Path) -> dict:
    """Row counts of every table (quarantine/<source> from the vault beside the lake), each
    user's segment, and the versions stamped on them."""
    vault = Path(root).parent / f"{Path(root).name}-vault"
    tables = {f"{p.parent.parent.name}/{p.parent.name}": read_delta(p.parent)
              for folder in (Path(root), vault)
              for p in sorted(folder.glob("*/*/_delta_log"))}
    features, events = tables["silver/user_features"], tables["bronze/events"]
    segments, embeddings = tables["gold/user_segments"], tables["gold/user_embeddings"]
    as_of = features["as_of"].max()
    return {
        "tables": {name: len(df) for name, df in tables.items()},
        "users_with_events": events["user_id"].nunique(),
        "users_with_events_as_of": events.loc[events["event_time"] <= as_of, "user_id"].nunique(),
        "segments": dict(zip(segments["user_id"], segments["segment"].astype(int))),
        "features": dict(zip(features["user_id"], features["features"])),
        "as_of": sorted({str(t) for t in features["as_of"]}),
        "feature_set_version": sorted(set(features["feature_set_version"])),
        "embedding_model_version": sorted(set(embeddings["model_version"])),
        "segment_model_version": sorted(set(segments["model_version"])),
        "encoder_version": sorted(set(segments["encoder_version"])),
        "models": sorted(zip(tables["meta/models"]["kind"],
                             tables["meta/models"]["model_version"])),
    }
