"""Reading checkpoints: what is found where, and the errors for what is
not (no network: a repo id offline fails at once)."""

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from kerasseq.pretrained import hf


def _write(directory, config=None, weights=None):
    directory.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (directory / "config.json").write_text(json.dumps(config))
    if weights is not None:
        save_file(weights, str(directory / "model.safetensors"))
    return directory


def test_reads_config_and_float32_weights(tmp_path):
    weights = {
        "a.weight": np.arange(6, dtype=np.float16).reshape(2, 3),
        "ids": np.arange(4, dtype=np.int64),
    }
    _write(tmp_path, {"model_type": "gpt2", "n_embd": 3}, weights)
    checkpoint = hf.read_checkpoint(str(tmp_path))
    assert checkpoint.config["n_embd"] == 3
    a = checkpoint.take("a.weight", shape=(2, 3))
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, np.arange(6).reshape(2, 3))
    assert checkpoint.weights["ids"].dtype == np.int64
    with pytest.raises(hf.CheckpointError, match=r"1 tensors.*\['ids'\]"):
        checkpoint.check_all_used()
    checkpoint.check_all_used(ignore=("ids",))


def test_missing_and_misshapen_tensors_are_named(tmp_path):
    _write(tmp_path, {"model_type": "gpt2"}, {"w": np.zeros((2, 3), "f4")})
    checkpoint = hf.read_checkpoint(tmp_path)
    with pytest.raises(hf.CheckpointError, match="no tensor 'v'.*1 tensors"):
        checkpoint.take("v")
    with pytest.raises(
        hf.CheckpointError, match=r"'w' has shape \(2, 3\).*needs \(3, 2\)"
    ):
        checkpoint.take("w", shape=(3, 2))


def test_assign_names_both_shapes():
    import keras

    variable = keras.Variable(np.zeros((2, 2), "float32"), name="kernel")
    hf.assign(variable, np.ones((2, 2)), "x.weight")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), 1)
    with pytest.raises(
        hf.CheckpointError, match=r"'x.weight' has shape \(3,\).*\(2, 2\)"
    ):
        hf.assign(variable, np.ones(3), "x.weight")


def test_missing_directory_config_and_weights(tmp_path):
    with pytest.raises(hf.CheckpointError, match="No checkpoint directory"):
        hf.read_checkpoint(str(tmp_path / "nowhere" / "deeper" / "x"))
    _write(tmp_path / "no_config", weights={"w": np.zeros(2, "f4")})
    with pytest.raises(hf.CheckpointError, match="no config.json"):
        hf.read_checkpoint(tmp_path / "no_config")
    _write(tmp_path / "no_weights", {"model_type": "gpt2"})
    with pytest.raises(
        hf.CheckpointError,
        match="no weights: expected model.safetensors or pytorch_model.bin",
    ):
        hf.read_checkpoint(tmp_path / "no_weights")
    bad = _write(tmp_path / "bad_json")
    (bad / "config.json").write_text("{not json")
    (bad / "model.safetensors").write_bytes(b"")
    with pytest.raises(hf.CheckpointError, match="not valid JSON"):
        hf.read_checkpoint(bad)


def test_truncated_safetensors_is_named(tmp_path):
    _write(tmp_path, {"model_type": "gpt2"}, {"w": np.zeros((64, 64), "f4")})
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(
        hf.CheckpointError, match=rf"{path}.*not a readable safetensors"
    ):
        hf.read_checkpoint(tmp_path)


def test_pytorch_bin_without_torch_says_how_to_convert(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    directory = _write(tmp_path, {"model_type": "gpt2"})
    (directory / "pytorch_model.bin").write_bytes(b"\0")
    with pytest.raises(hf.CheckpointError, match="safe_serialization=True"):
        hf.read_checkpoint(directory)


def test_unsupported_model_type_lists_the_supported(tmp_path):
    _write(tmp_path, {"model_type": "t5"}, {"w": np.zeros(2, "f4")})
    with pytest.raises(
        hf.CheckpointError,
        match="Unsupported model_type .t5.*Supported: bert, big_bird, gpt2, "
        "gpt_neox, longformer, mamba, roberta",
    ):
        hf.from_hf(tmp_path)


def test_repo_id_offline_fails_at_once(monkeypatch):
    # the hub call is replaced by one that fails as an offline machine does
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(
        hf.CheckpointError,
        match="'EleutherAI/pythia-70m' is not a local directory.*OSError",
    ):
        hf.read_checkpoint("EleutherAI/pythia-70m")
