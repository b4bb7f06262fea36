import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from absl import flags

from experiments import synthetic
from experiments.common import config as config_lib
from experiments.common import options
from experiments.common import train
from experiments.common.callbacks import Checkpoints
from experiments.common.callbacks import EpochTimer
from experiments.common.callbacks import checkpoint_position
from kerasseq import catalogue
from tests.experiments.binaries import ROOT
from tests.experiments.binaries import run_binary
from tests.experiments.binaries import small_config


def _task_args(eval_seq_len=("12,12",)):
    return synthetic.SyntheticOptions(
        train_seq_len="6,8",
        eval_seq_len=list(eval_seq_len),
        num_train_examples=64,
        num_eval_examples=16,
    )


def _config(workdir, models=("gpt", "lstm"), **kwargs):
    task_args = kwargs.pop("task_args", _task_args())
    return small_config(
        "synthetic",
        "bit_parity",
        models,
        task_args,
        workdir,
        None,
        **{"steps": 6, "batch_size": 8, **kwargs},
    )


def _epochs(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_run_writes_every_artifact(tmp_path):
    config = _config(tmp_path, wandb_mode="offline")
    results = train.run(config, synthetic.make_task_data)
    assert set(results) == {"gpt", "lstm"}
    for name in ("gpt", "lstm"):
        run_dir = tmp_path / "bit_parity" / name
        saved = json.loads((run_dir / "results.json").read_text())
        assert set(saved["eval"]) == {"T6-8", "T12-12"}
        assert 0 <= saved["eval"]["T12-12"]["accuracy"] <= 1
        assert saved["train_steps"] == 6
        assert saved["parameters"]["total"] > 0
        assert saved["train_time_s"] > 0
        # a row per checkpoint (by default every tenth of the 6 steps: 1),
        # validated at every second step
        assert _epochs(run_dir) == [0, 1, 2, 3, 4, 5]
        with open(run_dir / "metrics.csv") as f:
            rows = csv.DictReader(f)  # Keras's CSVLogger: NA where unset
            validated = [r["epoch"] for r in rows if r["val_loss"] != "NA"]
        assert validated == ["1", "3", "5"]
        written = json.loads((run_dir / "config.json").read_text())
        assert written["model"] == name and written["preset"] == "tiny"
        assert written["model_config"]["backbone"]["max_sequence_length"] == 12
        assert os.listdir(run_dir / "tensorboard")
        assert any(
            d.startswith("offline-run") for d in os.listdir(run_dir / "wandb")
        )
        assert not (run_dir / "backup").exists()
        model = keras.saving.load_model(run_dir / "model.keras")
        assert model.count_params() == saved["parameters"]["total"]
    table = (tmp_path / "bit_parity" / "comparison.md").read_text()
    assert "| gpt |" in table and "| lstm |" in table
    assert "T12-12 accuracy" in table
    with open(tmp_path / "bit_parity" / "comparison.csv") as f:
        assert [r["model"] for r in csv.DictReader(f)] == ["gpt", "lstm"]


def train_and_evaluate_at_two_lengths(tmp_path, names):
    # the eval splits differ in length (8 and 12): each gets its own step
    config = _config(tmp_path, models=names, steps=2, eval_every=2)
    results = train.run(config, synthetic.make_task_data)
    assert set(results) == set(names)
    for name in names:
        run_dir = tmp_path / "bit_parity" / name
        saved = json.loads((run_dir / "results.json").read_text())
        assert set(saved["eval"]) == {"T6-8", "T12-12"}
        for metrics in saved["eval"].values():
            assert np.isfinite(metrics["loss"])


@pytest.mark.large  # ~90 s: a compile per scan model and length
def test_scan_models_evaluate_at_two_lengths(tmp_path):
    # the scan kernels need a static length: a relaxed retrace across eval
    # lengths would leave it unknown (selective_scan; linear_recurrence
    # with complex inputs)
    train_and_evaluate_at_two_lengths(tmp_path, ("mamba", "diag_rnn"))


def test_finished_results_are_never_overwritten(tmp_path):
    train.run(_config(tmp_path, models=("lstm",)), synthetic.make_task_data)
    path = tmp_path / "bit_parity" / "lstm" / "results.json"
    before = path.read_text()
    mtime = os.path.getmtime(path)
    results = train.run(
        _config(tmp_path, models=("gpt", "lstm")), synthetic.make_task_data
    )
    assert path.read_text() == before and os.path.getmtime(path) == mtime
    assert results["lstm"] == json.loads(before)
    assert (tmp_path / "bit_parity" / "gpt" / "results.json").exists()

    # other settings in the same workdir: refused before anything trains,
    # nothing written is touched
    other_lengths = _task_args(eval_seq_len=["12,16"])
    snapshot = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    config = _config(
        tmp_path, models=("qlstm", "lstm"), task_args=other_lengths, steps=4
    )
    with pytest.raises(ValueError) as error:
        train.run(config, synthetic.make_task_data)
    message = str(error.value)
    assert "'lstm'" in message and "--overwrite" in message
    assert "steps: saved 6, now 4" in message
    assert "['12,12']" in message and "['12,16']" in message  # eval lengths
    assert not (tmp_path / "bit_parity" / "qlstm").exists()
    assert {
        p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
    } == snapshot


def _final_weights(run_dir):
    model = keras.saving.load_model(run_dir / "model.keras")
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


_RESUMED_MODELS = [
    "gpt",
    # ~40 s each; on JAX too in `make test-all`
    pytest.param("mamba", marks=pytest.mark.large),
    pytest.param("performer", marks=pytest.mark.large),
]


# the default suite resumes within a span (below), which also checks the
# weights, results and metrics.csv rows; this resume at a span's boundary is
# `large` for time (~100 s)
@pytest.mark.large
@pytest.mark.parametrize("model", _RESUMED_MODELS)
def test_resumed_run_ends_exactly_as_an_uninterrupted_one(
    tmp_path, monkeypatch, model
):
    """Same weights, bit for bit, and same results: the resumed run skips
    the batches trained before its checkpoint, and the optimizer's state
    and the dropout seeds come back with the weights. Checkpoints at every
    step (--checkpoint_every=1), evaluations at every second."""
    # interrupted in step 4, after the checkpoint of step 3
    config, whole, resumed = _whole_and_interrupted(
        tmp_path,
        monkeypatch,
        model,
        (EpochTimer, "on_epoch_end"),
        lambda self, epoch, logs=None: epoch == 3,
        eval_every=2,
        checkpoint_every=1,
    )
    assert (resumed / "backup").exists()
    assert not (resumed / "results.json").exists()
    assert _epochs(resumed) == [0, 1, 2]

    monkeypatch.undo()  # the callback as it was
    train.run(config, synthetic.make_task_data)
    # steps 1-3 are not trained again: the run resumed, it did not restart
    assert _epochs(resumed) == [0, 1, 2, 3, 4, 5]
    _assert_ends_alike(whole, resumed)


def _whole_and_interrupted(
    tmp_path, monkeypatch, model, callback, stop, **schedule
):
    """Trains `model` for 6 steps with dropout and `schedule` (when it
    evaluates and checkpoints) to the end in whole/, then again in
    resumed/, preempted: the callback method `callback` (a class and a
    method name) raises KeyboardInterrupt after it ran whenever
    `stop(self, *arguments)` is true; it stays so patched. Returns the
    config of the interrupted run and the model's two run folders."""
    settings = dict(
        models=(model,), steps=6, model_args={"dropout": 0.1}, **schedule
    )
    train.run(_config(tmp_path / "whole", **settings), synthetic.make_task_data)
    cls, name = callback
    method = getattr(cls, name)

    def preempted(self, *args, **kwargs):
        method(self, *args, **kwargs)
        if stop(self, *args, **kwargs):
            raise KeyboardInterrupt("simulated preemption")

    monkeypatch.setattr(cls, name, preempted)
    config = _config(tmp_path / "resumed", **settings)
    with pytest.raises(KeyboardInterrupt):
        train.run(config, synthetic.make_task_data)
    whole = tmp_path / "whole" / "bit_parity" / model
    resumed = tmp_path / "resumed" / "bit_parity" / model
    return config, whole, resumed


def _assert_ends_alike(whole, resumed):
    """The same final weights, bit for bit, the same results (evaluations
    and last training metrics) and the same metrics.csv rows (in the
    header's order), but for the times."""
    weights = _final_weights(whole), _final_weights(resumed)
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
    results = [
        json.loads((d / "results.json").read_text()) for d in (whole, resumed)
    ]
    assert results[0]["eval"] == results[1]["eval"]
    for r in results:
        del r["final_train"]["epoch_time_s"]
    assert results[0]["final_train"] == results[1]["final_train"]
    assert _metrics_rows(whole) == _metrics_rows(resumed)


def _metrics_rows(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return [
            {k: v for k, v in row.items() if k != "epoch_time_s"}
            for row in csv.DictReader(f)
        ]


@pytest.mark.parametrize("model", _RESUMED_MODELS)
def test_a_checkpoint_within_a_span_resumes_exactly(
    tmp_path, monkeypatch, model
):
    """--checkpoint_minutes adds checkpoints within a span of
    --checkpoint_every steps (here after every step but a span's last). A
    run killed after step 5 of spans of 3 resumes at step 5: it trains only
    step 6, and ends with the weights, results and metrics.csv rows (the
    span's running loss included) of the uninterrupted run."""
    trained, crashed = [], []

    def once_after_step_5(self, batch, logs=None):
        trained.append(self._units())
        if trained[-1] == 5 and not crashed:
            crashed.append(True)
            return True
        return False

    config, whole, resumed = _whole_and_interrupted(
        tmp_path,
        monkeypatch,
        model,
        (Checkpoints, "on_train_batch_end"),
        once_after_step_5,
        eval_every=6,
        checkpoint_every=3,
        checkpoint_minutes=1e-9,
    )
    assert checkpoint_position(resumed / "backup") == (1, 2)

    trained.clear()
    train.run(config, synthetic.make_task_data)
    assert trained == [6]
    _assert_ends_alike(whole, resumed)


@pytest.mark.parametrize(
    "steps, eval_every, checkpoint_every, expected",
    [
        (100, 100, 0, 10),  # a tenth of the run, not only at its end
        (1000, 100, 0, 100),  # evaluations are 10% apart already
        (1000, 300, 0, 100),  # a divisor of the evaluation spacing
        (70, 7, 0, 7),
        (5, 5, 0, 1),
        (2, 100, 0, 1),  # evaluated at the end: 2 steps
        (100, 100, 25, 25),  # as given
        (0, 100, 0, None),  # epochs: each is checkpointed
    ],
)
def test_default_checkpoints_lose_at_most_a_tenth(
    tmp_path, steps, eval_every, checkpoint_every, expected
):
    config = _config(
        tmp_path,
        steps=steps,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
    )
    assert config.checkpoint_steps() == expected


def test_checkpoint_every_must_divide_eval_every(tmp_path):
    with pytest.raises(ValueError, match="multiple of --checkpoint_every=3"):
        _config(tmp_path, eval_every=4, checkpoint_every=3)


def _binary(*args, env=None):
    """The program with TensorFlow's C++ logs silenced, unless `env` (added
    to the environment) says otherwise."""
    return run_binary(
        "synthetic", *args, env={"TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    )


# the environment as a user has it: TensorFlow's logs not silenced
_USER_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": None}


def test_binary_end_to_end(tmp_path):
    result = _binary(
        "--model=lstm,gpt",
        "--task=mqar",
        "--preset=tiny",
        "--num_kv_pairs=2",
        "--num_keys=8",
        "--num_values=8",
        "--train_seq_len=6,6",
        "--eval_seq_len=8,10",
        "--steps=2",
        "--eval_every=2",
        "--batch_size=4",
        "--num_train_examples=16",
        "--num_eval_examples=8",
        f"--workdir={tmp_path}",
        "--wandb_mode=offline",
        env=_USER_ENVIRONMENT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| lstm |" in result.stdout and "| gpt |" in result.stdout
    saved = json.loads((tmp_path / "mqar" / "gpt" / "results.json").read_text())
    assert set(saved["eval"]) == {"T6-6", "T8-10"}
    # the binary's own lines say what happens where
    run_dir = os.path.join(str(tmp_path), "mqar", "gpt")
    assert f"gpt: training 2 steps in {run_dir}" in result.stdout
    assert "gpt: trained in" in result.stdout
    assert "gpt: evaluating T8-10" in result.stdout
    assert f"Saved as {os.path.join(str(tmp_path), 'mqar', 'comparison')}.md"
    # and nothing of the libraries': TensorFlow's C++ logs, Python
    # warnings, W&B's banners (all printed before this was quiet)
    for noise in ("cudart_stub", "absl::InitializeLog", "Warning", "wandb:"):
        assert noise not in result.stderr + result.stdout, noise
    assert (tmp_path / "mqar" / "gpt" / "wandb").is_dir()


@pytest.mark.large  # ~25 s: a program that trains, for a logging switch
def test_verbose_3_shows_the_libraries_logs(tmp_path):
    result = _binary(
        "--model=gpt",
        "--preset=tiny",
        "--steps=1",
        "--eval_every=1",
        "--num_train_examples=8",
        "--num_eval_examples=8",
        f"--workdir={tmp_path}",
        "--wandb_mode=offline",
        "--batch_size=4",
        "--verbose=3",
        env=_USER_ENVIRONMENT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "absl::InitializeLog" in result.stderr


def test_usage_error_is_one_line_and_a_hint(tmp_path):
    result = _binary("--model=gpt,foo", f"--workdir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "synthetic: error: Unknown model 'foo'. Valid models: "
        + ", ".join(catalogue.MODEL_NAMES)
        + ".",
        "Run `python -m experiments.synthetic --help` for its flags.",
    ]


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--strategy=horovod", "flag --strategy=horovod: value should be one"),
        ("--seed=abc", "flag --seed=abc: invalid literal for int()"),
        ("--nosuchflag", "Unknown command line flag 'nosuchflag'"),
    ],
)
def test_a_flag_the_parser_refuses_is_a_usage_error(tmp_path, flag, message):
    result = _binary(flag, f"--workdir={tmp_path}")
    assert result.returncode == 2
    error, hint = result.stderr.splitlines()
    assert error.startswith(f"synthetic: error: {message}")
    assert hint == "Run `python -m experiments.synthetic --help` for its flags."


def test_help_lists_every_flag_and_the_models():
    result = _binary("--help")
    assert result.returncode == 0  # absl's own --help exits with 1
    for flag in ("--model:", "--steps:", "--checkpoint_every:", "--task:"):
        assert flag in result.stdout, flag
    assert "Registered: gpt, transformer, lstm, mamba" in result.stdout


def _interruptible(args):
    """The binary `args` started so that SIGINT reaches it as Ctrl-C would.

    A process started with SIGINT ignored keeps ignoring it (Python then
    installs no KeyboardInterrupt handler), and a test runner started in
    the background by a shell (`pytest ... &`, nohup) hands that on to its
    children: the binary would train on after the signal.
    """
    return subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


# ~60-130 s: two programs; the resume itself is checked in the default
# suite by test_resumed_run_ends_exactly_as_an_uninterrupted_one
@pytest.mark.large
def test_ctrl_c_exits_130_and_the_same_command_resumes(tmp_path):
    args = [
        sys.executable,
        "-m",
        "experiments.synthetic",
        "--model=gpt",
        "--preset=tiny",
        "--steps=100000",
        "--eval_every=2",
        "--batch_size=4",
        "--num_train_examples=16",
        "--num_eval_examples=8",
        f"--workdir={tmp_path}",
        "--wandb_mode=disabled",
    ]
    process = _interruptible(args)
    backup = tmp_path / "mqar" / "gpt" / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 240
    while not backup.exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint in 240 s"
        time.sleep(0.5)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr.decode()[-2000:]
    # e.g. "interrupted at step 7 of gpt; the same command resumes from
    # step 6 (its last checkpoint)"
    said = re.search(
        r"synthetic: interrupted at step (\d+) of gpt; the same command "
        r"resumes from step (\d+) \(its last checkpoint\)\.",
        stderr.decode(),
    )
    assert said, stderr.decode()[-2000:]
    at, resumes_at = map(int, said.groups())
    assert resumes_at <= at and resumes_at % 2 == 0  # checkpoints: 2 steps
    assert "Traceback" not in stderr.decode()
    assert b"gpt: training 100000 steps in" in stdout
    # the same command (fewer steps would be other settings) says it resumes
    # and where; it is stopped again at once
    process = _interruptible(args)
    line = b""
    while b"gpt: training" not in line:
        line = process.stdout.readline()
        assert line, process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    assert b", resuming at step " in line


def _config_from_flags(*args):
    flag_values = synthetic.FLAGS
    flag_values.unparse_flags()
    flag_values(["synthetic", *args])
    try:
        return config_lib.from_flags(
            flag_values,
            "synthetic",
            options.from_flags(synthetic.SyntheticOptions, flag_values),
        )
    finally:
        flag_values.unparse_flags()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model=gpt,foo"], "Unknown model 'foo'. Valid models: gpt"),
        (["--model=,"], "--model is empty"),
        (["--preset=huge"], "Unknown preset 'huge'"),
        (["--train_seq_len=8,4"], "train_seq_len"),
        (["--eval_seq_len=a,b"], "eval_seq_len"),
        (["--batch_size=0"], "--batch_size must be a positive integer"),
        (["--steps=-3"], "--steps must be an integer >= 0"),
        (["--learning_rate=0"], "--learning_rate must be positive"),
        (["--num_kv_pairs=0"], "num_kv_pairs"),
        (["--num_kv_pairs=20", "--train_seq_len=16"], "num_kv_pairs"),
        (["--num_train_examples=0"], "--num_train_examples must be"),
        (["--model_args=num_layers"], "--model_args expects key=value"),
        (["--data_dir=/no/such/dir"], "is not a directory"),
    ],
)
def test_bad_flags_fail_before_training(tmp_path, args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _config_from_flags(*args, f"--workdir={tmp_path}")
    assert os.listdir(tmp_path) == []


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(flags.IllegalFlagValueError, match="bit_parity"):
        _config_from_flags("--task=sorting")


def test_unwritable_workdir_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="is not writable"):
        _config_from_flags(f"--workdir={blocker}/runs")


def test_binary_reports_bad_input_and_exits_nonzero(tmp_path):
    result = _binary("--model=gpt,foo", f"--workdir={tmp_path}")
    assert result.returncode != 0
    assert "Unknown model 'foo'. Valid models: gpt" in result.stderr
    assert os.listdir(tmp_path) == []


def test_unknown_model_arg_fails_before_training(tmp_path):
    config = _config(tmp_path, model_args={"num_experts": 4})
    with pytest.raises(
        ValueError, match=r"Unknown argument\(s\) \['num_experts'\]"
    ):
        train.run(config, synthetic.make_task_data)
    assert not (tmp_path / "bit_parity").exists()
    np.testing.assert_equal(os.listdir(tmp_path), [])


@pytest.mark.parametrize(
    "model_args,message",
    [
        ({"dropout": 2.0}, "dropout"),
        ({"num_layers": -1}, "num_layers"),
    ],
)
def test_values_the_model_refuses_fail_before_anything_is_written(
    tmp_path, model_args, message
):
    config = _config(tmp_path, models=("gpt",), model_args=model_args)
    with pytest.raises(train.ModelSettingsError, match=message):
        train.run(config, synthetic.make_task_data)
    np.testing.assert_equal(os.listdir(tmp_path), [])


def test_model_args_mistake_is_one_line_without_traceback(tmp_path):
    result = _binary(
        "--model=gpt",
        "--preset=tiny",
        "--model_args=dropout=2",
        f"--workdir={tmp_path}",
        "--wandb_mode=disabled",
    )
    assert result.returncode != 0
    assert "dropout" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert os.listdir(tmp_path) == []


def test_tilde_in_path_flags_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data").mkdir()
    config = _config_from_flags("--workdir=~/runs", "--data_dir=~/data")
    assert config.workdir == str(tmp_path / "runs")
    assert config.data_dir == str(tmp_path / "data")


def test_a_fresh_process_error_reaches_the_caller(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASSEQ_TEST_PARENT_PID", str(os.getpid()))
    config = _config(
        tmp_path, models=("gpt", "lstm"), steps=2, fresh_process=True
    )
    with pytest.raises(Exception, match="no_such"):
        train.run(config, failing_in_child)


def failing_in_child(config):
    """Task data that loads in this process and fails in any other."""
    if os.getpid() != int(os.environ["KERASSEQ_TEST_PARENT_PID"]):
        raise ValueError("no_such data in the model's process")
    return synthetic.make_task_data(config)
