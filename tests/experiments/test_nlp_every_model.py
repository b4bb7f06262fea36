"""Every registered model through the NLP binaries on small fixtures
(`large`: a compile per model and split; the default suite runs a few
models per binary)."""

import pytest

from kerasseq.models import MODELS
from tests.experiments.test_wikitext_binary import run_models as run_wikitext

CAUSAL_MODELS = tuple(name for name, spec in MODELS.items() if spec.causal)


@pytest.mark.large
def test_every_causal_model_on_wikitext(tmp_path):
    run_wikitext(tmp_path, CAUSAL_MODELS)
