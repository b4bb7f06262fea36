"""Every mixer through the synthetic binary, evaluated at two lengths
(`large`: a compile per model, about 9 minutes on 2 cores; the default
suite runs two scan models in test_synthetic_binary.py)."""

import pytest

from tests.experiments.test_synthetic_binary import (
    train_and_evaluate_at_two_lengths,
)
from tests.testing import one_model_per_mixer


@pytest.mark.large
def test_every_mixer_trains_and_evaluates_at_two_lengths(tmp_path):
    train_and_evaluate_at_two_lengths(tmp_path, tuple(one_model_per_mixer()))
