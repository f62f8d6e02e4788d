"""The pipeline logged to an MLflow tracking server, read back through its REST API; the
encoder and K-Means model in its model registry; embed and segment on the cluster scoring
with the versions local mode registered."""
import json
import urllib.parse
import urllib.request

import pytest

from tests.integration.conftest import get_json, lake_summary, submit

STAGES = {"ingest", "features", "train", "embed", "segment"}


def api(server: str, endpoint: str, **query) -> dict:
    return get_json(f"{server}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}")


def stage_runs(server: str, experiment: str) -> dict[str, list[dict]]:
    """Runs of ``experiment`` by their ``persona.stage`` tag, newest first."""
    experiment_id = api(server, "experiments/get-by-name",
                        experiment_name=experiment)["experiment"]["experiment_id"]
    request = urllib.request.Request(
        f"{server}/api/2.0/mlflow/runs/search", method="POST",
        data=json.dumps({"experiment_ids": [experiment_id], "max_results": 100,
                         "order_by": ["attributes.start_time DESC"]}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        runs = json.loads(response.read())["runs"]
    out: dict[str, list[dict]] = {}
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        if "persona.stage" in tags:
            out.setdefault(tags["persona.stage"], []).append(run)
    return out


def values(run: dict, kind: str) -> dict:
    return {item["key"]: item["value"] for item in run["data"].get(kind, [])}


def champion(server: str, name: str) -> dict:
    return api(server, "registered-models/alias", name=name, alias="champion")["model_version"]


def versions(server: str, name: str) -> list[str]:
    found = api(server, "model-versions/search", filter=f"name = '{name}'")
    return sorted(v["version"] for v in found.get("model_versions", []))


@pytest.fixture(scope="module")
def runs(local_run, mlflow_server):
    return stage_runs(mlflow_server, "persona-local")


def test_every_stage_run_is_on_the_server(runs):
    assert set(runs) >= STAGES
    assert all(len(runs[stage]) == 1 for stage in STAGES)


def test_train_run_params_metrics_and_artifacts(runs, mlflow_server):
    train = runs["train"][0]
    run_id = train["info"]["run_id"]
    params, metrics = values(train, "params"), values(train, "metrics")
    assert params["train.epochs"] == "8" and params["model.latent_dim"] == "6"
    assert params["model.hidden"] == "[32, 16]"

    history = api(mlflow_server, "metrics/get-history", run_id=run_id, metric_key="loss")
    losses = sorted(history["metrics"], key=lambda m: m["step"])
    assert [m["step"] for m in losses] == list(range(1, 9))
    assert losses[-1]["value"] == pytest.approx(metrics["final_loss"])
    assert losses[-1]["value"] < losses[0]["value"]

    files = api(mlflow_server, "artifacts/list", run_id=run_id, path="encoder")["files"]
    assert {f["path"] for f in files} == {"encoder/encoder.json", "encoder/weights.npz",
                                          "encoder/spec.json"}
    # Artifacts are served by the tracking server (mlflow-artifacts:/), not read from disk.
    root = train["info"]["artifact_uri"]
    assert root.startswith("mlflow-artifacts:/")
    url = f"{mlflow_server}/api/2.0/mlflow-artifacts/artifacts/{root.split(':/', 1)[1]}"
    spec = get_json(f"{url}/encoder/spec.json")
    assert spec["latent_dim"] == 6 and spec["epochs"] == 8 and spec["hidden"] == [32, 16]


def test_ingest_metrics_match_the_lake(runs, local_summary):
    metrics = values(runs["ingest"][0], "metrics")
    tables = local_summary["tables"]
    assert metrics["events_rows_bronze"] == tables["bronze/events"]
    assert metrics["events_rows_quarantine"] == tables["quarantine/events"] > 0
    assert metrics["events_rows_read"] == tables["bronze/events"] + tables["quarantine/events"]
    assert values(runs["segment"][0], "metrics")["k"] == 5


def test_models_registered_with_champion_on_the_versions_in_use(runs, mlflow_server,
                                                                  local_summary):
    encoder = champion(mlflow_server, "persona-encoder")
    assert encoder["run_id"] == runs["train"][0]["info"]["run_id"]
    assert local_summary["embedding_model_version"] == [encoder["run_id"]]
    assert {t["key"]: t["value"] for t in encoder["tags"]}["feature_set_version"] == \
        local_summary["feature_set_version"][0]
    kmeans = champion(mlflow_server, "persona-kmeans")
    assert kmeans["run_id"] == runs["segment"][0]["info"]["run_id"]
    assert versions(mlflow_server, "persona-encoder") == ["1"]
    assert versions(mlflow_server, "persona-kmeans") == ["1"]


def test_cluster_scores_with_registered_versions_like_local_mode(runs, local_summary,
                                                                cluster_run, cluster_summary,
                                                                spark_cluster, mlflow_server):
    """embed and segment on the cluster's lake with the encoder and K-Means model that local
    mode trained and registered: no training, and the segments of local mode."""
    settings, folder = cluster_run["settings"], cluster_run["folder"]
    submit(spark_cluster, "embed", [*settings, "model.uri=models:/persona-encoder@champion"],
           folder / "embed-registered.log")
    submit(spark_cluster, "segment",
           [*settings, "segment.model_uri=models:/persona-kmeans@champion"],
           folder / "segment-registered.log")
    (after,) = lake_summary(cluster_run["lake"])

    # The embeddings carry the version of the encoder local mode trained.
    assert after["embedding_model_version"] == local_summary["embedding_model_version"]
    assert after["segment_model_version"] == local_summary["segment_model_version"]
    users = sorted(local_summary["segments"])
    assert sorted(after["segments"]) == users
    # The cluster's features equal local mode's up to float rounding, so a user on the
    # boundary of two segments could in principle flip: allow 1 %.
    differ = sum(after["segments"][u] != local_summary["segments"][u] for u in users)
    assert differ <= len(users) // 100
    # Nothing was trained or fitted again: the one new catalog entry records the registered
    # K-Means model now in use (kind segments, the version local mode fitted).
    fitted = lambda summary: [m for m in summary["models"] if m[0] != "segments"]
    assert fitted(after) == fitted(cluster_summary)
    new = set(after["models"]) - set(cluster_summary["models"])
    assert new == {("segments", v) for v in local_summary["segment_model_version"]}
    assert versions(mlflow_server, "persona-kmeans") == ["1"]
    assert champion(mlflow_server, "persona-kmeans")["version"] == "1"
    latest = stage_runs(mlflow_server, "persona-cluster")["segment"][0]
    metrics = values(latest, "metrics")
    assert metrics["k"] == 5 and "training_cost" not in metrics
    assert values(latest, "params")["segment.model_uri"] == "models:/persona-kmeans@champion"
