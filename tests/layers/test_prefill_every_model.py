"""`prefill` for the mixers the default suite leaves out, and under XLA
for every mixer not in its `XLA_IN_DEFAULT_SUITE`, the scan-kernel ones
(`SCANS`) included (`large`: a compile per mixer)."""

import pytest

from tests.layers.test_prefill import IN_DEFAULT_SUITE
from tests.layers.test_prefill import NAMES
from tests.layers.test_prefill import XLA_IN_DEFAULT_SUITE
from tests.layers.test_prefill import check_prefill
from tests.layers.test_prefill import check_prefill_under_xla

pytestmark = pytest.mark.large


@pytest.mark.parametrize(
    "name", [n for n in NAMES if n not in IN_DEFAULT_SUITE]
)
def test_prefill_is_call_and_leaves_the_stepped_state(name):
    check_prefill(name)


@pytest.mark.parametrize(
    "name", [n for n in NAMES if n not in XLA_IN_DEFAULT_SUITE]
)
def test_prefill_under_xla(name):
    check_prefill_under_xla(name)
