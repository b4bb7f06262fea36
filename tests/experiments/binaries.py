"""What the tests of the experiment binaries share: a small config (the
`tiny` preset, two steps, no W&B) and running a binary as a program."""

import os
import subprocess
import sys

from experiments.common.config import ExperimentConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def small_config(family, task, models, task_args, workdir, data_dir, **kw):
    """An `ExperimentConfig` for a quick end-to-end run; `kw` overrides."""
    defaults = dict(
        family=family,
        task=task,
        models=models,
        preset="tiny",
        task_args=task_args,
        workdir=str(workdir),
        data_dir=None if data_dir is None else str(data_dir),
        steps=2,
        eval_every=2,
        batch_size=4,
        wandb_mode="disabled",
        verbose=0,
    )
    return ExperimentConfig(**{**defaults, **kw})


def run_binary(module, *args, env=None, cwd=ROOT):
    """Runs `python -m experiments.<module> ARGS` from `cwd` (the repository
    root by default); `env` adds to the environment."""
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
        timeout=600,
    )


def assert_usage_error(result, match):
    """The program failed as a usage error (exit 2) with `match` in its
    message and no traceback."""
    assert result.returncode == 2, (result.args, result.stderr[-2000:])
    assert match in result.stderr, (result.args, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
