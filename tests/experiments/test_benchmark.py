import importlib.util
import json
import os
import re

import pytest

from tests.experiments.binaries import run_binary


def _benchmark(*args, command="ops"):
    return run_binary("benchmark", command, *args)


def test_benchmark_measures_each_mode_and_the_baseline(tmp_path):
    result = _benchmark(
        "--op=linear_recurrence",
        "--mode=recurrent,autodiff",
        "--seq_len=32",
        "--batch_size=2",
        "--repeats=1",
        f"--output_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    saved = sorted(os.listdir(tmp_path))
    assert [os.path.splitext(p)[1] for p in saved] == [".json", ".md"]
    backend = json.loads((tmp_path / saved[0]).read_text())
    rows = backend["results"]
    assert [(r["mode"], r["pass"]) for r in rows] == [
        ("recurrent", "forward"),
        ("recurrent", "backward"),
        ("autodiff", "forward"),
        ("autodiff", "backward"),
    ]
    for row in rows:
        assert "error" not in row, row
        assert row["shape"]["seq_len"] == 32 and row["shape"]["batch"] == 2
        assert row["tokens_per_s"] == pytest.approx(64 / row["seconds"])
        assert row["peak_memory_mb"] is None or row["peak_memory_mb"] >= 0
    environment = backend["environment"]
    assert environment["backend"] in ("tensorflow", "jax")
    table = (tmp_path / saved[1]).read_text()
    assert table.count("| linear_recurrence |") == 4
    assert "tokens/s" in table


@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not installed"
)
def test_benchmark_measures_both_backends_side_by_side(tmp_path):
    result = _benchmark(
        "--op=matrix_recurrence",  # the dense transition (linear RNN)
        "--mode=recurrent",
        "--passes=forward",
        "--backends=tensorflow,jax",
        "--seq_len=16",
        "--batch_size=2",
        "--repeats=1",
        f"--output_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "ops_tensorflow+jax.json").read_text())
    rows = record["results"]
    # each measurement on each backend in turn, timed against the first
    assert [r["backend"] for r in rows] == ["tensorflow", "jax"]
    assert rows[0]["time_vs_first_backend"] == 1.0
    assert rows[1]["time_vs_first_backend"] == pytest.approx(
        rows[1]["seconds"] / rows[0]["seconds"]
    )
    environment = record["environment"]
    assert environment["backend"] == "tensorflow+jax"
    assert environment["tensorflow"] and environment["jax"]
    table = (tmp_path / "ops_tensorflow+jax.md").read_text()
    assert "| backend |" in table and "| time × tensorflow |" in table
    assert "| recurrent | forward | jax |" in table


@pytest.mark.parametrize(
    "args,match",
    [
        (["--op=conv"], "--op='conv': unknown \\['conv'\\]"),
        (["--backends=torch"], "--backends='torch': unknown \\['torch'\\]"),
        (["--op=delta_rule", "--mode=parallel"], "unknown \\['parallel'\\]"),
        (["--passes=sideways"], "unknown \\['sideways'\\]"),
    ],
)
def test_benchmark_rejects_unknown_names(tmp_path, args, match):
    result = _benchmark(*args, f"--output_dir={tmp_path}")
    assert result.returncode != 0
    assert re.search(match, result.stderr), result.stderr[-2000:]
    assert not os.listdir(tmp_path)


@pytest.mark.large  # ~30 s; the ops benchmark's test is in the default suite
def test_layers_benchmark_compares_models_with_gpt(tmp_path):
    result = _benchmark(
        "--models=qlstm",
        "--lengths=16",
        "--preset=tiny",
        "--batch_size=2",
        "--repeats=1",
        f"--output_dir={tmp_path}",
        command="layers",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    saved = sorted(os.listdir(tmp_path))
    rows = json.loads((tmp_path / saved[0]).read_text())["results"]
    # gpt joins as the reference of every ratio
    assert [(r["model"], r["seq_len"]) for r in rows] == [
        ("gpt", 16),
        ("qlstm", 16),
    ]
    for row in rows:
        assert "error" not in row, row
        assert row["loss_finite"]
        assert row["tokens_per_s"] == pytest.approx(
            row["batch"] * row["seq_len"] / row["seconds"]
        )
    assert [os.path.splitext(p)[1] for p in saved] == [".json", ".md", ".png"]
    assert (tmp_path / saved[2]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gpt, qlstm = rows
    assert gpt["speed_vs_gpt"] == 1.0
    assert qlstm["speed_vs_gpt"] == pytest.approx(
        qlstm["tokens_per_s"] / gpt["tokens_per_s"]
    )
    assert "× gpt speed" in (tmp_path / saved[1]).read_text()


def test_layers_benchmark_rejects_bad_flags():
    from absl import app

    from experiments.common.parsing import parse_lengths
    from experiments.common.parsing import parse_list
    from kerasseq.models import MODEL_NAMES

    with pytest.raises(app.UsageError, match="--models='rnn9': unknown"):
        parse_list("rnn9", MODEL_NAMES, "models")
    with pytest.raises(app.UsageError, match="--lengths='1k': expected"):
        parse_lengths("1k")
    with pytest.raises(app.UsageError, match="--lengths='0'"):
        parse_lengths("0")
    assert parse_lengths("1024,2048") == [1024, 2048]
    assert parse_list("all", ("a", "b"), "x") == ["a", "b"]
