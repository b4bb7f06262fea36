"""Every registered model through every LRA task, the pixel tasks end to
end, and parameter matching at ListOps' widths (`large`: a compile per
model and eval split, about half an hour on 2 cores; the default suite runs
a few models on the token tasks in test_lra_binary.py). Each model trains
in a fresh process, as the binaries do."""

import pytest

from kerasseq.models import COMPARED_MODELS
from tests.experiments.test_lra_binary import PAIRS
from tests.experiments.test_lra_binary import check_parameters_matched
from tests.experiments.test_lra_binary import run_task


@pytest.mark.large
@pytest.mark.parametrize("task", ["image", "pathfinder"])
def test_pixel_task_end_to_end(tmp_path, task):
    run_task(tmp_path, task, PAIRS[task])


@pytest.mark.large
@pytest.mark.parametrize("task", list(PAIRS))
def test_every_model_on_every_lra_task(tmp_path, task):
    # each model in a process of its own, as the binary does: one process
    # would keep every model's compiled programs (0.2 to 1 GB each)
    run_task(tmp_path, task, COMPARED_MODELS, fresh_process=True)


@pytest.mark.large
def test_listops_sizes_keep_every_model_within_10_percent_of_gpt():
    check_parameters_matched("listops")
