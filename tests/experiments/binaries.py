"""What the tests of the experiment binaries share: a config as the tests
build it (quiet, no W&B) and a small one (the `tiny` preset, two steps),
running a binary as a program, the flags of a run that must fail before
training, and the check that it failed as a usage error."""

import os
import subprocess
import sys

from experiments.common.config import ExperimentConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def experiment_config(
    family, task, models, task_args, workdir, data_dir=None, **settings
):
    """An `ExperimentConfig` that prints nothing and logs nowhere (W&B
    disabled), with its folders as strings; `settings` give the rest."""
    quiet = dict(
        family=family,
        task=task,
        models=models,
        task_args=task_args,
        workdir=str(workdir),
        data_dir=None if data_dir is None else str(data_dir),
        wandb_mode="disabled",
        verbose=0,
    )
    return ExperimentConfig(**{**quiet, **settings})


def small_config(family, task, models, task_args, workdir, data_dir, **kw):
    """An `experiment_config` for a quick end-to-end run: the `tiny` preset,
    two steps, evaluated at the second, batches of 4; `kw` overrides."""
    small = dict(preset="tiny", steps=2, eval_every=2, batch_size=4)
    return experiment_config(
        family, task, models, task_args, workdir, data_dir, **{**small, **kw}
    )


def run_binary(module, *args, env=None, cwd=ROOT):
    """Runs `python -m experiments.<module> ARGS` from `cwd` (the repository
    root by default); `env` adds to the environment, and a variable it maps
    to None is removed from it."""
    environment = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={k: v for k, v in environment.items() if v is not None},
        timeout=600,
    )


def failing_run_flags(workdir):
    """The flags of a program run that should fail before it trains: the
    `tiny` preset, one step, no W&B, writing under `workdir`."""
    return [
        f"--workdir={workdir}",
        "--preset=tiny",
        "--steps=1",
        "--wandb_mode=disabled",
    ]


def assert_usage_error(result, match):
    """The program failed as a usage error (exit 2) with `match` in its
    message and no traceback."""
    assert result.returncode == 2, (result.args, result.stderr[-2000:])
    assert match in result.stderr, (result.args, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
