"""Keras's implicit mask under `fit` for every registered mixer not in the
default suite's `FIT_IN_DEFAULT_SUITE` (`large`: a compile per mixer)."""

import pytest

from tests.layers.test_mixer_contract import FIT_IN_DEFAULT_SUITE
from tests.layers.test_mixer_contract import NAMES
from tests.layers.test_mixer_contract import check_masks_under_fit

pytestmark = pytest.mark.large


@pytest.mark.parametrize(
    "name", [n for n in NAMES if n not in FIT_IN_DEFAULT_SUITE]
)
def test_masks_reach_the_mixer_in_sequential_and_functional_fit(name):
    check_masks_under_fit(name)
