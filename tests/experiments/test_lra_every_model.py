"""Every registered model through every LRA task, the pixel tasks end to
end, and parameter matching at ListOps' widths (`large`: a compile per
model and eval split, about half an hour on 2 cores; the default suite runs
a few models on the token tasks in test_lra_binary.py)."""

import pytest

from kerasseq.models import MODEL_NAMES
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
    run_task(tmp_path, task, MODEL_NAMES)


@pytest.mark.large
def test_listops_sizes_keep_every_model_within_10_percent_of_gpt():
    check_parameters_matched("listops")
