"""The packaged pipeline submitted to a real Spark standalone cluster (a master and two
1-core workers on 127.0.0.1) gives the same tables as the same spark-submit in local mode."""
from sklearn.metrics import adjusted_rand_score

from tests.integration.conftest import USERS, lake_summary

TABLES = {"bronze/events", "bronze/users", "bronze/content", "quarantine/events",
          "silver/user_features", "gold/user_embeddings", "gold/user_segments",
          "gold/segment_profiles", "meta/models"}


def test_cluster_tables_match_local_mode(local_summary, cluster_run):
    local = local_summary
    (cluster,) = lake_summary(cluster_run["lake"])

    assert TABLES <= set(local["tables"])
    assert cluster["tables"] == local["tables"]
    users = local["tables"]["silver/user_features"]
    assert 0 < users <= USERS
    assert local["tables"]["gold/user_segments"] == users

    assert set(cluster["segments"]) == set(local["segments"])
    assert len(set(cluster["segments"].values())) == len(set(local["segments"].values())) == 5
    order = sorted(local["segments"])
    ari = adjusted_rand_score([local["segments"][u] for u in order],
                              [cluster["segments"][u] for u in order])
    print(f"adjusted Rand index, cluster vs local segments: {ari:.3f}")
    assert ari >= 0.8
    assert cluster["feature_set_version"] == local["feature_set_version"]


def test_both_workers_ran_executors_and_horovod_ranks(cluster_run):
    log = cluster_run["log"].read_text(errors="replace")
    assert "master spark://127.0.0.1:" in log
    assert "persona train | epoch 8/8" in log  # rank 0 of Horovod, relayed to the driver
    for worker in (1, 2):
        folder = cluster_run["work"] / f"spark-worker-{worker}"
        executors = [p for p in folder.glob("app-*/*") if (p / "stderr").exists()]
        assert executors, f"worker {worker} ran no executor"
