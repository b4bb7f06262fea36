"""`--init_from`: fine-tuning a registered model from a Hugging Face
checkpoint of its architecture, and the errors for one that does not fit."""

import json
import os

import keras
import numpy as np
import pytest
from absl import app
from safetensors.numpy import save_file

from experiments import synthetic
from experiments.common import train
from kerasseq.models import RecurrentGPT2
from kerasseq.pretrained import build_from_checkpoint
from kerasseq.pretrained import check_checkpoint
from kerasseq.pretrained import from_hf
from tests.experiments.binaries import assert_usage_error
from tests.experiments.binaries import run_binary
from tests.experiments.binaries import small_config

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


def _run(tmp_path, model, init_from, **task):
    """`train.run_program` in this process (the usage-error paths)."""
    task = {"train_seq_len": "6,8", "eval_seq_len": ["8,8"], **task}
    name = "mqar" if "vocab_size" in task else "bit_parity"
    task_args = synthetic.SyntheticOptions(
        num_train_examples=32, num_eval_examples=8, **task
    )
    config = small_config(
        "synthetic",
        name,
        (model,),
        task_args,
        tmp_path / "runs",
        None,
        init_from=str(init_from),
        batch_size=8,
    )
    return train.run_program(config, synthetic.make_task_data)


def test_unsupported_and_missing_checkpoints(tmp_path):
    checkpoint = _checkpoint(tmp_path / "t5", "t5")
    with pytest.raises(app.UsageError, match="Unsupported model_type 't5'"):
        _run(tmp_path, "gpt2", checkpoint)
    with pytest.raises(app.UsageError, match="No checkpoint directory"):
        _run(tmp_path, "gpt2", tmp_path / "absent" / "dir")


FIXTURES = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "fixtures", "hf"
)
MQAR = (
    "--task=mqar",
    "--num_kv_pairs=2",
    "--train_seq_len=16,16",
    "--eval_seq_len=16,16",
    "--num_train_examples=32",
    "--num_eval_examples=8",
    "--steps=2",
    "--eval_every=2",
    "--batch_size=8",
    "--wandb_mode=disabled",
)


def _built_from(fixture, name, task, **arguments):
    """Model `name` for `task` built from the checkpoint fixture
    tests/fixtures/hf/`fixture`, for a vocabulary of 100 tokens."""
    return build_from_checkpoint(
        name,
        os.path.join(FIXTURES, fixture),
        task,
        vocabulary_size=100,
        **arguments,
    )


def test_gpt2_fine_tunes_from_a_checkpoint(tmp_path):
    # the fixture's vocabulary has 100 tokens: MQAR over 100 tokens fits it
    checkpoint = os.path.join(FIXTURES, "gpt2")
    result = run_binary(
        "synthetic",
        *MQAR,
        "--vocab_size=100",
        "--model=gpt2",
        f"--init_from={checkpoint}",
        f"--workdir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "mqar" / "gpt2"
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["train_steps"] == 2
    assert json.loads((run_dir / "config.json").read_text())["init_from"]
    # the trained model has the checkpoint's sizes, not the preset's
    model = keras.saving.load_model(run_dir / "model.keras")
    backbone = model.backbone
    assert (backbone.hidden_dim, backbone.num_layers) == (32, 2)
    assert backbone.blocks[0].activation == "gelu_approximate"


def test_a_vocabulary_that_is_not_the_checkpoints_is_refused(tmp_path):
    checkpoint = os.path.join(FIXTURES, "gpt2")
    with pytest.raises(
        app.UsageError,
        match="vocabulary of 100 tokens, but the task's tokenizer has 64",
    ):
        _run(tmp_path, "gpt2", checkpoint, vocab_size=64, num_kv_pairs=2)
    # refused from config.json, before the run directory is written
    assert not (tmp_path / "runs" / "mqar" / "gpt2").exists()


def test_model_args_the_checkpoint_fixes_are_refused(tmp_path):
    # a preset size or --model_args would otherwise be dropped silently,
    # and the run's config.json would record sizes the model does not have
    checkpoint = os.path.join(FIXTURES, "gpt2")
    config = small_config(
        "synthetic",
        "mqar",
        ("gpt2",),
        synthetic.SyntheticOptions(
            num_train_examples=32,
            num_eval_examples=8,
            train_seq_len="16,16",
            eval_seq_len=["16,16"],
            vocab_size=100,
            num_kv_pairs=2,
        ),
        tmp_path / "runs",
        None,
        init_from=checkpoint,
        batch_size=8,
        model_args={"num_layers": 4, "head": {"dropout": 0.2}},
    )
    with pytest.raises(
        app.UsageError, match=r"\['num_layers'\] cannot be set .*config.json"
    ):
        train.run_program(config, synthetic.make_task_data)
    assert not (tmp_path / "runs" / "mqar" / "gpt2").exists()


def test_a_warm_start_takes_the_attention_arguments(tmp_path):
    # --model_args=window=... reaches the Longformer grown from BERT, and
    # the run records the checkpoint's config.json as its model
    model = _built_from(
        "bert",
        "longformer",
        "sequence_classification",
        max_sequence_length=24,
        num_classes=3,
        window=4,
        num_global_tokens=2,
    )
    mixer = model.backbone.blocks[0].mixer
    assert (mixer.window, mixer.num_global_tokens) == (4, 2)
    data = train.TaskData(
        head="sequence_classification",
        make_train=None,
        evals={},
        model_args={"vocabulary_size": 100, "num_classes": 3},
        loss=None,
        make_metrics=list,
        primary_metric="accuracy",
    )
    config = small_config(
        "textcls",
        "folder",
        ("longformer",),
        None,
        tmp_path,
        None,
        init_from=os.path.join(FIXTURES, "bert"),
        model_args={"window": 4},
    )
    resolved = train.resolve_model(config, "longformer", data)
    assert resolved.mixer["window"] == 4
    assert resolved.checkpoint["model_type"] == "bert"
    assert resolved.head["num_classes"] == 3


def test_recurrent_gpt2_starts_as_the_checkpoints_gpt2(tmp_path):
    # the gate starts closed: each segment's logits are GPT-2's on that
    # segment alone
    model = _built_from(
        "gpt2",
        "recurrent_gpt2",
        "causal_lm",
        max_sequence_length=16,
        segment_length=8,
    )
    assert isinstance(model, RecurrentGPT2)
    gpt2 = from_hf(os.path.join(FIXTURES, "gpt2"))
    ids = np.random.default_rng(0).integers(0, 100, (2, 16)).astype("int32")
    mask = np.ones((2, 16), bool)
    logits = keras.ops.convert_to_numpy(
        model({"token_ids": ids, "padding_mask": mask})
    )
    for start in (0, 8):
        segment = {
            "token_ids": ids[:, start : start + 8],
            "padding_mask": mask[:, start : start + 8],
        }
        expected = keras.ops.convert_to_numpy(gpt2(segment))
        np.testing.assert_allclose(
            logits[:, start : start + 8], expected, atol=1e-5
        )


@pytest.mark.parametrize("name", ["longformer", "bigbird"])
def test_longformer_and_bigbird_warm_start_from_bert(name):
    # BERT's 64 positions tiled to the task's 160; the registry's mixer
    model = _built_from(
        "bert",
        name,
        "sequence_classification",
        max_sequence_length=160,
        num_classes=3,
    )
    backbone = model.backbone
    assert (
        type(backbone.blocks[0].mixer).__name__
        == {
            "longformer": "LongformerAttention",
            "bigbird": "BigBirdAttention",
        }[name]
    )
    assert backbone.block_type == "post_norm"
    table = keras.ops.convert_to_numpy(backbone.position_embedding.embeddings)
    assert table.shape[0] == 160
    np.testing.assert_array_equal(table[64:128], table[:64])
    ids = np.random.default_rng(0).integers(0, 100, (2, 160)).astype("int32")
    logits = model({"token_ids": ids, "padding_mask": np.ones((2, 160), bool)})
    assert tuple(logits.shape) == (2, 3)


@pytest.mark.parametrize(
    "name, checkpoint, task, arguments",
    [
        ("gpt2", "gpt2", "causal_lm", {}),
        ("mamba", "mamba", "causal_lm", {}),
        ("transformer", "roberta", "sequence_classification", {}),
        ("bigbird", "big_bird", "sequence_classification", {}),
        # a warm start: BERT's weights grown into Longformer at 24 positions
        ("longformer", "bert", "sequence_classification", {"window": 4}),
        ("recurrent_gpt2", "gpt2", "causal_lm", {}),
    ],
)
def test_the_run_record_is_the_config_of_the_model_built(
    name, checkpoint, task, arguments
):
    # what check_checkpoint reads from config.json alone is what
    # build_from_checkpoint then builds, with the checkpoint's part marked
    path = os.path.join(FIXTURES, checkpoint)
    if task == "sequence_classification":
        arguments = {**arguments, "num_classes": 3}
    arguments = {**arguments, "max_sequence_length": 24}
    record = check_checkpoint(name, path, task, **arguments)
    model = build_from_checkpoint(name, path, task, **arguments)
    assert {"hidden_dim", "num_layers", "vocabulary_size"} <= set(record.fixed)
    assert "num_classes" not in record.fixed
    built = model.backbone.get_config()
    for key, value in record.backbone.items():
        if key in built and key != "dtype":
            assert built[key] == value, key
    mixer = model.backbone.blocks[0].mixer.get_config()
    for key, value in record.mixer.items():
        assert mixer[key] == value, key
    head = model.get_config()
    for key, value in record.head.items():
        if key in head:
            assert head[key] == value, key
    assert record.checkpoint["model_type"] == checkpoint
    assert json.loads(json.dumps(record.to_dict()))["fixed"] == list(
        record.fixed
    )
