"""`python -m experiments.benchmark accelerator` at its tiny shapes on this
CPU: every kernel row measured on JAX, the peers skipped with a line where
the peer Python has no torch, the budget, bad flags."""

import importlib.util
import json
import os
import sys

import pytest

from experiments.common import accelerator_benchmark as accelerator
from tests.experiments.binaries import assert_usage_error
from tests.experiments.binaries import run_binary

# the benchmark runs on JAX (its parent process too, where no backend is
# set: a GPU machine may have no TensorFlow)
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not installed"
)


def _no_torch_python(tmp_path):
    """A peer Python that has no torch, whatever this machine has."""
    path = tmp_path / "python-without-torch"
    path.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c "
        '"raise ModuleNotFoundError(\\"No module named \'torch\'\\")"\n'
    )
    path.chmod(0o755)
    return str(path)


def _accelerator(tmp_path, *args):
    output = tmp_path / "out"
    result = run_binary(
        "benchmark",
        "accelerator",
        "--accelerator_size=tiny",
        "--repeats=1",
        f"--peer_python={_no_torch_python(tmp_path)}",
        f"--output_dir={output}",
        *args,
    )
    return result, output


def test_every_kernel_and_a_training_step_run_at_tiny_shapes(tmp_path):
    result, output = _accelerator(tmp_path, "--models=gpt")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((output / "accelerator_jax.json").read_text())
    rows = record["results"]
    expected = [
        (kernel, f"kerasseq {mode}", p)
        for kernel in accelerator.KERNELS
        for mode in accelerator.OURS[kernel]
        for p in ("forward", "backward")
    ] + [("training step", "kerasseq gpt", "train_on_batch")]
    assert [(r["kernel"], r["implementation"], r["pass"]) for r in rows] == (
        expected
    )
    for row in rows:
        assert "error" not in row, row
        assert row["seconds"] > 0
        batch, length = map(int, row["shape"].split("x"))
        assert row["tokens_per_s"] == pytest.approx(
            batch * length / row["seconds"]
        )
        assert "time_vs_peer" not in row  # no peer ran
    attention = next(
        r for r in rows if r["implementation"] == "kerasseq compute_attention"
    )
    shape = attention["dims"]
    flops = 2 * shape["batch"] * shape["heads"] * shape["seq_len"] ** 2
    assert attention["tflop_per_s"] == pytest.approx(
        flops * shape["key"] / attention["seconds"] / 1e12
    )
    assert rows[-1]["loss_finite"]
    environment = record["environment"]
    assert environment["kerasseq"] == "cpu: cpu"
    assert environment["dtype"] == "bfloat16"
    table = (output / "accelerator_jax.md").read_text()
    for peer in accelerator.PEERS.values():
        assert f"skipped: {peer}: " in table and "has no torch" in table
    assert table.count("| selective_scan | kerasseq ") == 6


def test_nothing_starts_after_the_budget(tmp_path):
    result, output = _accelerator(
        tmp_path, "--budget_s=0", "--kernels=delta_rule", "--models=lstm"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((output / "accelerator_jax.json").read_text())
    assert record["results"] == []
    table = (output / "accelerator_jax.md").read_text()
    assert table.count("not started, over --budget_s") == 3
    assert "kerasseq lstm training step 2x32 train_on_batch" in table
    assert "kerasseq chunk delta_rule 2x64 backward" in table


def test_kerasseq_rows_are_timed_against_the_peer():
    dims = {"batch": 2, "seq_len": 8, "heads": 1, "key": 4, "value": 4}

    def row(implementation, seconds, shape="2x8"):
        return {
            "kernel": "linear_attention",
            "implementation": implementation,
            "shape": shape,
            "pass": "forward",
            "dims": dims,
            "seconds": seconds,
        }

    rows = accelerator.add_rates(
        [
            row("kerasseq chunk", 3.0),
            row("fla chunk_linear_attn", 2.0),
            row("kerasseq chunk", 1.0, shape="4x8"),
        ],
        "bfloat16",
        chunk_size=4,
    )
    assert rows[0]["time_vs_peer"] == 1.5
    assert "time_vs_peer" not in rows[1] and "time_vs_peer" not in rows[2]
    # q, k, v, o of 2*8 tokens, one head of 4, in 2 bytes
    assert rows[1]["gb_per_s"] == pytest.approx(2 * 8 * 16 * 2 / 2.0 / 1e9)
    # 2 B H T (C (K + V) + 2 K V) with C = 4
    flops = 2 * 2 * 1 * 8 * (4 * 8 + 2 * 16)
    assert rows[1]["tflop_per_s"] == pytest.approx(flops / 2.0 / 1e12)


@pytest.mark.parametrize(
    "args,match",
    [
        (["--kernels=conv"], "--kernels='conv': unknown ['conv']"),
        (["--accelerator_size=huge"], "--accelerator_size='huge': allowed"),
        (["--dtype=int8"], "--dtype='int8': unknown ['int8']"),
        (["--models=rnn9"], "--models='rnn9': unknown ['rnn9']"),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path, args, match):
    result, output = _accelerator(tmp_path, *args)
    assert_usage_error(result, match)
    assert not os.path.exists(output)
