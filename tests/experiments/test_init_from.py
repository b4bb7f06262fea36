"""`--init_from`: fine-tuning a registered model from a Hugging Face
checkpoint of its architecture, and the errors for one that does not fit."""

import json

import numpy as np
from safetensors.numpy import save_file

from tests.experiments.binaries import assert_usage_error
from tests.experiments.binaries import run_binary

SYNTHETIC = (
    "--task=bit_parity",
    "--train_seq_len=6,8",
    "--eval_seq_len=8,8",
    "--num_train_examples=32",
    "--num_eval_examples=8",
    "--preset=tiny",
    "--steps=2",
    "--eval_every=2",
    "--batch_size=8",
    "--wandb_mode=disabled",
)


def _checkpoint(directory, model_type):
    directory.mkdir()
    (directory / "config.json").write_text(
        json.dumps({"model_type": model_type})
    )
    save_file(
        {"w": np.zeros(2, "float32")}, str(directory / "model.safetensors")
    )
    return directory


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    checkpoint = _checkpoint(tmp_path / "ckpt", "gpt2")
    result = run_binary(
        "synthetic",
        *SYNTHETIC,
        "--model=mamba",
        f"--init_from={checkpoint}",
        f"--workdir={tmp_path / 'runs'}",
    )
    assert_usage_error(
        result, "is a 'gpt2' checkpoint, which model 'mamba' cannot load"
    )
    assert "Models that load it: gpt2, distilgpt2" in result.stderr
    assert not (tmp_path / "runs" / "bit_parity" / "mamba").exists()


def test_unsupported_and_missing_checkpoints(tmp_path):
    checkpoint = _checkpoint(tmp_path / "t5", "t5")
    result = run_binary(
        "synthetic",
        *SYNTHETIC,
        "--model=gpt2",
        f"--init_from={checkpoint}",
        f"--workdir={tmp_path / 'runs'}",
    )
    assert_usage_error(result, "Unsupported model_type 't5'")
    result = run_binary(
        "synthetic",
        *SYNTHETIC,
        "--model=gpt2",
        f"--init_from={tmp_path / 'absent' / 'dir'}",
        f"--workdir={tmp_path / 'runs'}",
    )
    assert_usage_error(result, "No checkpoint directory")
