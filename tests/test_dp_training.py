"""persona train with DP-SGD (train.privacy): epsilon from the accountant in the log, in MLflow
and in meta/models, and one clear line for what cannot be private."""
import math
import sys

import numpy as np
import pytest
import yaml

from persona.cli import main
from tests.conftest import make_config

pytest.importorskip("tensorflow_privacy")
pytestmark = pytest.mark.stage

USERS = 300


def error_line(capsys):
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("persona: error:")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def conf(spark, tmp_path):
    """A configuration whose lake holds silver/user_features of USERS users (6 features)."""
    from persona.lake.tables import Lake

    config = make_config(str(tmp_path), train={
        "num_proc": 2, "epochs": 2, "batch_size": 16, "hidden": [], "latent_dim": 2,
        "petastorm_cache": str(tmp_path / "petastorm")})
    rng = np.random.default_rng(0)
    rows = [(f"u{i}", [float(v) for v in rng.normal(size=6)], "fs", float(rng.normal()))
            for i in range(USERS)]
    Lake(spark, str(tmp_path / "lake")).overwrite(spark.createDataFrame(
        rows, "user_id string, features array<float>, feature_set_version string, "
              "spend double"), "silver/user_features")
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(config.data))
    return str(path)


def test_dp_training_reports_epsilon(spark, tmp_path, conf, capsys):
    import mlflow

    from persona.lake.tables import Lake
    from persona.training.privacy import dp_epsilon

    assert main(["train", "--conf", conf, "--set", "train.privacy.noise_multiplier=1.1"]) == 0
    # 2 epochs of ceil(300 / (16 x 2)) = 10 steps, batches of 32 of 300 users, delta 1/300.
    expected = dp_epsilon(USERS, 32, 2 * math.ceil(USERS / 32), 1.1, 1 / USERS)
    assert f"DP-SGD: (epsilon {expected:.3f}, delta 0.00333)" in capsys.readouterr().err
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("persona-tests")
    (run,) = client.search_runs([experiment.experiment_id], "metrics.dp_epsilon > 0")
    assert run.data.metrics["dp_epsilon"] == pytest.approx(expected)
    assert run.data.metrics["dp_delta"] == pytest.approx(1 / USERS)
    assert run.data.params["model.dp_noise_multiplier"] == "1.1"
    model = Lake(spark, str(tmp_path / "lake")).read("meta/models").first()
    assert model["dp_epsilon"] == pytest.approx(expected)
    assert model["dp_delta"] == pytest.approx(1 / USERS)


def test_missing_library_is_one_line(conf, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_privacy", None)
    assert main(["train", "--conf", conf, "--set", "train.privacy.noise_multiplier=1"]) == 2
    assert "train.privacy.noise_multiplier is set but tensorflow-privacy is not installed" \
        in error_line(capsys)


def test_delta_above_one_over_users(conf, capsys):
    assert main(["train", "--conf", conf, "--set", "train.privacy.noise_multiplier=1",
                 "--set", "train.privacy.delta=0.01"]) == 2
    assert "train.privacy.delta 0.01 is above 1 / users (1/300)" in error_line(capsys)


def test_global_batch_of_every_user(conf, capsys):
    assert main(["train", "--conf", conf, "--set", "train.privacy.noise_multiplier=1",
                 "--set", "train.batch_size=150"]) == 2
    assert "train.privacy: the global batch (train.batch_size x train.num_proc = 300) must " \
           "be smaller than the 300 users" in error_line(capsys)


def test_no_noise_or_dec_refinement_with_privacy(conf, capsys):
    assert main(["config", "--conf", conf, "--set", "train.privacy.noise_multiplier=0"]) == 2
    assert "train.privacy.noise_multiplier must be > 0 (0 would add no noise: no privacy), " \
           "got 0" in error_line(capsys)
    assert main(["config", "--conf", conf, "--set", "train.privacy.noise_multiplier=1",
                 "--set", "segment.method=idec"]) == 2
    assert "segment.method idec refines the encoder on the users' data without differential " \
           "privacy: with train.privacy.noise_multiplier set, use kmeans or gmm" \
        in error_line(capsys)
