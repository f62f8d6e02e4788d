"""The packaged pipeline submitted to a real Spark standalone cluster (a master and two
1-core workers on 127.0.0.1) gives the same tables as the same spark-submit in local mode.

Up to the features the tables are the same, row for row (the scaled features up to float
rounding: Spark sums partial aggregates in arrival order). Training amplifies those last-bit
differences, so two trainings give different encoders, and K-Means on a few hundred users
is not stable across encoders: the agreement of the independently trained segments is
measured (adjusted Rand index) but not required. That the cluster assigns the same segments
as local mode with the same encoder and K-Means model is asserted in test_mlflow_server.py.
"""
import numpy as np
from sklearn.metrics import adjusted_rand_score

from tests.integration.conftest import MEASURED, USERS

TABLES = {"bronze/events", "bronze/users", "bronze/content", "quarantine/events",
          "silver/user_features", "gold/user_embeddings", "gold/user_segments",
          "gold/segment_profiles", "meta/models"}


def test_cluster_tables_match_local_mode(local_summary, cluster_summary):
    local, cluster = local_summary, cluster_summary
    assert TABLES <= set(local["tables"])
    assert cluster["tables"] == local["tables"]
    users = sorted(local["features"])
    assert 0 < len(users) <= USERS
    assert sorted(cluster["features"]) == users
    assert cluster["feature_set_version"] == local["feature_set_version"]
    assert cluster["as_of"] == local["as_of"]
    for user in users:
        np.testing.assert_allclose(cluster["features"][user], local["features"][user],
                                   rtol=1e-5, atol=1e-6)

    assert sorted(local["segments"]) == sorted(cluster["segments"]) == users
    for lake in (local, cluster):
        assert len(set(lake["segments"].values())) == 5
        assert lake["tables"]["gold/user_embeddings"] == len(users)
    ari = adjusted_rand_score([local["segments"][u] for u in users],
                              [cluster["segments"][u] for u in users])
    MEASURED["adjusted Rand index, independently trained cluster vs local segments"] = \
        f"{ari:.3f}"


def test_both_workers_ran_executors_and_horovod_ranks(cluster_run):
    log = cluster_run["log"].read_text(errors="replace")
    assert "master spark://127.0.0.1:" in log
    assert "persona train | epoch 8/8" in log  # rank 0 of Horovod, relayed to the driver
    # 2 ranks need 2 task slots: one in each 1-core executor, one executor per worker.
    for worker in (1, 2):
        folder = cluster_run["work"] / f"spark-worker-{worker}"
        executors = [p for p in folder.glob("app-*/*") if (p / "stderr").exists()]
        assert executors, f"worker {worker} ran no executor"
