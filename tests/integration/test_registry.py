"""The encoder's registry entries on a SQLite MLflow (no Spark): versions, the alias moved to
the encoder in use, and ``models:/`` URIs resolved to the run that trained the encoder."""
import mlflow
import numpy as np
import pytest

from persona.config import Config
from persona.errors import PersonaError
from persona.lake.catalog import (ENCODER_ARTIFACT, EncoderRef, current_encoder, load_encoder,
                                  model_version, promote_encoder, register_encoder, save_encoder)
from persona.training.autoencoder import AutoencoderSpec


@pytest.fixture()
def config(tmp_path):
    """Default registry names; MLflow in SQLite under ``tmp_path``."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "registry", f"file://{tmp_path}/artifacts"))
    yield Config({})
    mlflow.set_tracking_uri(previous)


def train_run(config, tmp_path, bias: float, feature_set: str) -> str:
    """A run that logged an encoder (one dense layer's weights) as train does."""
    folder = tmp_path / f"encoder-{bias}"
    folder.mkdir()
    save_encoder(str(folder), '{"layers": []}', [np.eye(2), np.full(2, bias)],
                 AutoencoderSpec(input_dim=2, latent_dim=2))
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), ENCODER_ARTIFACT)
        version = register_encoder(config, run.info.run_id, {"feature_set_version": feature_set})
    assert version.run_id == run.info.run_id
    return run.info.run_id


def test_versions_alias_and_resolution(config, tmp_path):
    first = train_run(config, tmp_path, 0.5, "fs-a")
    second = train_run(config, tmp_path, 1.5, "fs-b")
    client = mlflow.MlflowClient()
    assert sorted(v.version for v in client.search_model_versions("name = 'persona-encoder'")) \
        == [1, 2]

    # embed used the first encoder (from meta/models): the alias moves to version 1.
    with mlflow.start_run():
        uri = promote_encoder(config, EncoderRef(first, f"runs:/{first}/{ENCODER_ARTIFACT}"))
    assert uri == "models:/persona-encoder/1"
    assert client.get_model_version_by_alias("persona-encoder", "champion").run_id == first

    ref = current_encoder(None, "models:/persona-encoder@champion")
    assert (ref.version, ref.uri, ref.feature_set_version) == \
        (first, "models:/persona-encoder/1", "fs-a")
    _, weights = load_encoder(ref.uri)
    assert weights[1].tolist() == [0.5, 0.5]

    ref = current_encoder(None, "models:/persona-encoder/2")
    assert (ref.version, ref.feature_set_version) == (second, "fs-b")
    assert load_encoder(ref.uri)[1][1].tolist() == [1.5, 1.5]


def test_encoder_from_another_uri_is_not_promoted(config, tmp_path):
    train_run(config, tmp_path, 0.5, "fs-a")
    path = str(tmp_path / "elsewhere")
    assert promote_encoder(config, EncoderRef(path, path)) is None
    assert mlflow.MlflowClient().get_registered_model("persona-encoder").aliases == {}


@pytest.mark.parametrize("uri", ["models:/persona-encoder", "runs:/abc/encoder",
                                 "models:/persona-encoder/latest", "models:/@champion"])
def test_malformed_registry_uris_are_rejected(uri):
    with pytest.raises(PersonaError, match="not a registered model URI"):
        model_version(uri)


def test_missing_alias_is_one_clear_error(config, tmp_path):
    train_run(config, tmp_path, 0.5, "fs-a")
    with pytest.raises(PersonaError) as error:
        current_encoder(None, "models:/persona-encoder@nobody")
    assert "cannot find registered model models:/persona-encoder@nobody" in str(error.value)
    assert "\n" not in str(error.value)
