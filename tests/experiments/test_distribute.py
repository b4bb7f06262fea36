"""`--strategy` and `--virtual_devices`: training on several devices
matches one device, weights are sharded where the layout says, and the
settings a machine cannot run are refused with what is needed."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from absl import app

from experiments import synthetic
from experiments.common import distribute
from experiments.common import train
from tests.experiments.binaries import ROOT
from tests.experiments.binaries import small_config


def _run_mode(mode, backend):
    """`python -m tests.experiments.distributed_runs MODE` (a process of its
    own: the devices are fixed when the backend starts)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.experiments.distributed_runs", mode],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT, "KERAS_BACKEND": backend},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute"
)
@pytest.mark.large  # ~70 s: a program per strategy
def test_mirrored_over_two_devices_matches_one_device():
    # the same initial weights and global batches of 8: two replicas of 4
    # each, their gradients summed, give one device's steps
    results = _run_mode("mirrored", "tensorflow")
    assert results["replicas"] == 2
    for name in ("gpt", "mamba", "deltanet"):
        single, mirrored = results[name]["single"], results[name]["mirrored"]
        np.testing.assert_allclose(mirrored, single, rtol=1e-5, err_msg=name)
        # the weights moved: the later losses differ from the first
        assert abs(single[-1] - single[0]) > 1e-3, (name, single)


@pytest.mark.large  # ~40 s: a program per layout
def test_jax_data_and_model_parallel_match_one_device():
    pytest.importorskip("jax")
    results = _run_mode("jax", "jax")
    default = results["default"]["losses"]
    data_parallel, model_parallel = (
        results["data_parallel"],
        results["model_parallel"],
    )
    assert data_parallel["replicas"] == 2
    np.testing.assert_allclose(data_parallel["losses"], default, rtol=1e-5)
    np.testing.assert_allclose(model_parallel["losses"], default, rtol=1e-5)
    # data parallel: every weight whole on both devices
    for path, weight in data_parallel["weights"].items():
        assert weight["devices"] == 2, path
        assert weight["shard"] == weight["shape"], path
    # model parallel: the layout's weights split in two along its axis
    weights = model_parallel["weights"]
    assert weights["token_embedding/embeddings"]["shard"] == [32, 32]
    assert weights["block_0/mlp_in/kernel"]["shard"] == [64, 128]
    assert weights["block_0/mlp_out/kernel"]["shard"] == [128, 64]
    assert weights["block_1/mixer_1/query_kernel"]["shard"] == [64, 2, 16]
    assert weights["block_1/mixer_1/output_kernel"]["shard"] == [2, 16, 64]
    # and the rest replicated
    assert weights["block_0/mlp_norm/gamma"]["shard"] == [64]


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow errors"
)
def test_strategies_this_machine_or_backend_cannot_run(monkeypatch):
    with pytest.raises(distribute.DistributionError, match="JAX backend"):
        distribute.get_strategy("model_parallel")
    with pytest.raises(distribute.DistributionError, match="found no TPU"):
        distribute.get_strategy("tpu")
    with pytest.raises(distribute.DistributionError, match="Unknown"):
        distribute.get_strategy("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(
        distribute.DistributionError, match="TF_CONFIG is not set"
    ):
        distribute.get_strategy("multi_worker")


def test_tf_config_is_checked():
    check = distribute.check_tf_config
    with pytest.raises(distribute.DistributionError, match="not JSON"):
        check("{cluster")
    with pytest.raises(distribute.DistributionError, match="needs a 'cluster'"):
        check('{"task": {"type": "worker", "index": 0}}')
    with pytest.raises(distribute.DistributionError, match="not a member"):
        check(
            '{"cluster": {"worker": ["a:1", "b:2"]}, '
            '"task": {"type": "worker", "index": 2}}'
        )
    check(
        '{"cluster": {"worker": ["a:1", "b:2"]}, '
        '"task": {"type": "worker", "index": 1}}'
    )


def test_the_chief_writes_and_the_other_workers_keep_to_themselves(
    monkeypatch,
):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.is_chief()
    cluster = {"worker": ["a:1", "b:2"]}
    for index, chief in ((0, True), (1, False)):
        monkeypatch.setenv(
            "TF_CONFIG",
            json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        )
        assert distribute.is_chief() is chief
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {
                "cluster": {**cluster, "chief": ["c:3"]},
                "task": {"type": "worker", "index": 0},
            }
        ),
    )
    assert not distribute.is_chief()


class _Replicas:
    def __init__(self, count):
        self.num_replicas_in_sync = count


def test_a_batch_that_does_not_split_across_replicas_is_refused():
    distribute.check_batch_size(12, _Replicas(4))
    with pytest.raises(
        distribute.DistributionError,
        match=r"--batch_size=10 .* 4 replicas, and must be a multiple of 4",
    ):
        distribute.check_batch_size(10, _Replicas(4))


def _config(tmp_path, **kw):
    return small_config(
        "synthetic", "bit_parity", ("gpt",), None, tmp_path, None, **kw
    )


def test_learning_rate_scaling_is_explicit(tmp_path):
    config = _config(tmp_path)
    assert train.learning_rate_for(config, _Replicas(4)) == config.learning_rate
    linear = _config(tmp_path, learning_rate_scaling="linear")
    assert train.learning_rate_for(linear, _Replicas(4)) == pytest.approx(
        4 * config.learning_rate
    )
    with pytest.raises(ValueError, match="Unknown --learning_rate_scaling"):
        _config(tmp_path, learning_rate_scaling="sqrt")
    with pytest.raises(ValueError, match="Unknown --strategy='horovod'"):
        _config(tmp_path, strategy="horovod")


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow errors"
)
def test_a_binary_refuses_a_strategy_it_cannot_run(tmp_path, monkeypatch):
    # a usage error before anything is written
    monkeypatch.delenv("TF_CONFIG", raising=False)
    task_args = synthetic.SyntheticOptions(
        num_train_examples=16,
        num_eval_examples=8,
        train_seq_len="6,8",
        eval_seq_len=["8,8"],
    )
    config = small_config(
        "synthetic",
        "bit_parity",
        ("gpt",),
        task_args,
        tmp_path / "runs",
        None,
        strategy="multi_worker",
    )
    with pytest.raises(app.UsageError, match="TF_CONFIG is not set"):
        train.run_program(config, synthetic.make_task_data)
    assert not (tmp_path / "runs" / "bit_parity").exists()


def test_evaluation_on_several_replicas_keeps_whole_batches():
    from kerasseq.data.batching import array_dataset

    inputs = {"token_ids": np.arange(11 * 3).reshape(11, 3)}
    dataset = array_dataset(inputs, np.arange(11), 4, seed=0)
    whole, dropped = train.full_batches({"test": dataset}, 4)
    sizes = [len(labels) for _, labels in whole["test"]]
    assert sizes == [4, 4]
    assert dropped == {"test": 3}
    # the same examples, in order, less the last three
    labels = np.concatenate([labels for _, labels in whole["test"]])
    np.testing.assert_array_equal(labels, np.arange(8))


def test_float16_training_scales_its_loss(tmp_path):
    # --mixed_precision=float16: the policy the run sets makes compile wrap
    # the run's optimizer in dynamic loss scaling; float32 variables
    from kerasseq.models import build_model

    keras.mixed_precision.set_global_policy(train._POLICIES["float16"])
    try:
        model = build_model("mamba", "causal_lm", "tiny", vocabulary_size=16)
        model.compile(
            optimizer=train._optimizer(_config(tmp_path), 10, 1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.weights
        assert all(v.dtype == "float32" for v in model.weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")
