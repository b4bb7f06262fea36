"""Fresh processes per model give the results one process gives (`large`:
four trainings, 90 s on 2 cores; the default suite runs several models
through each binary, each in a fresh process, and checks that an error in
one reaches the caller)."""

import os

import numpy as np
import pytest

from experiments import synthetic
from experiments.common import train
from tests.experiments.test_synthetic_binary import _config


def task_data_recording_process(config):
    """`synthetic.make_task_data` that notes which process called it (a
    module-level function, so that a fresh process can be given it)."""
    with open(os.path.join(config.workdir, "pids.txt"), "a") as f:
        f.write(f"{os.getpid()}\n")
    return synthetic.make_task_data(config)


@pytest.mark.large
def test_fresh_process_per_model_gives_the_same_results(tmp_path):
    # in one process lstm trains after gpt; in fresh processes it comes
    # first in its own: equal results also show that a model's data order
    # does not depend on the models trained before it
    models = ("gpt", "lstm")
    here = train.run(
        _config(tmp_path / "here", models=models, steps=2),
        synthetic.make_task_data,
    )
    (tmp_path / "fresh").mkdir()
    fresh = train.run(
        _config(tmp_path / "fresh", models=models, steps=2, fresh_process=True),
        task_data_recording_process,
    )
    pids = (tmp_path / "fresh" / "pids.txt").read_text().split()
    # this process reads the data once, then each model's own process
    assert len(pids) == 3 and len(set(pids)) == 3, pids
    assert pids[0] == str(os.getpid())
    for name in models:
        for split, metrics in here[name]["eval"].items():
            np.testing.assert_allclose(
                fresh[name]["eval"][split]["loss"], metrics["loss"], rtol=1e-5
            )
        saved = tmp_path / "fresh" / "bit_parity" / name / "model.keras"
        assert saved.exists()
