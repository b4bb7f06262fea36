"""Every registered model through its paces and stepping, beyond the
default suite's `PACES_IN_DEFAULT_SUITE` and `STEPPING_IN_DEFAULT_SUITE`
(`large`: a compile per model)."""

import pytest

from tests.models.test_heads import PACES_IN_DEFAULT_SUITE
from tests.models.test_heads import STEPPING_IN_DEFAULT_SUITE
from tests.models.test_heads import _cases
from tests.models.test_heads import check_paces
from tests.models.test_heads import check_stepping
from tests.models.test_heads import stepping_cases

pytestmark = pytest.mark.large


@pytest.mark.parametrize(
    "name,task", [c for c in _cases() if c not in PACES_IN_DEFAULT_SUITE]
)
def test_model_through_its_paces(name, task):
    check_paces(name, task)


@pytest.mark.parametrize(
    "name", [n for n in stepping_cases() if n not in STEPPING_IN_DEFAULT_SUITE]
)
def test_stepping_equals_call_and_generate_is_greedy(name):
    check_stepping(name)
