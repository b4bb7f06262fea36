"""Every registered model through its paces on its main task, beyond the
default suite's `PACES_IN_DEFAULT_SUITE` (`large`: a compile per model)."""

import pytest

from tests.models.test_heads import PACES_IN_DEFAULT_SUITE
from tests.models.test_heads import _cases
from tests.models.test_heads import check_paces

pytestmark = pytest.mark.large


@pytest.mark.parametrize(
    "name,task", [c for c in _cases() if c[0] not in PACES_IN_DEFAULT_SUITE]
)
def test_model_through_its_paces(name, task):
    check_paces(name, task)
