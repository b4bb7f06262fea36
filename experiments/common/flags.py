"""Flags shared by every experiment binary.

Each binary calls `define_shared_flags(...)` with its task names and default
model, defines its own task flags, and turns the parsed flags into an
`ExperimentConfig` with `config.from_command_line` (or `config.from_flags`).
The shared flags are made from `ExperimentConfig`'s fields (their defaults,
help and allowed values).
"""

from experiments.common import options
from experiments.common.config import ExperimentConfig
from experiments.common.options import catalogue


def define_shared_flags(
    tasks,
    default_task,
    default_model="gpt",
    download_modes=catalogue.DOWNLOAD_MODES,
):
    """Defines the flags every binary takes: one per setting of
    `ExperimentConfig`; `--task` takes `tasks`, `--download` the values
    `download_modes` (no flag when `None`: binaries that download
    nothing)."""
    options.define_flags(
        ExperimentConfig,
        # a program trains each of several models in a fresh process
        defaults={
            "task": default_task,
            "models": default_model,
            "fresh_process": True,
        },
        choices={"task": tuple(tasks), "download": download_modes},
        skip=() if download_modes is not None else ("download",),
    )
