"""Every registered model through the NLP binaries on small fixtures
(`large`: a compile per model and split; the default suite runs a few
models per binary)."""

import pytest

from kerasseq.data import glue
from kerasseq.models import COMPARED_MODELS
from kerasseq.models import MODELS
from tests.experiments.test_glue_binary import run_task as run_glue
from tests.experiments.test_squad_binary import run_squad
from tests.experiments.test_wikitext_binary import run_models as run_wikitext

CAUSAL_MODELS = tuple(name for name, spec in MODELS.items() if spec.causal)


@pytest.mark.large
def test_every_causal_model_on_wikitext(tmp_path):
    run_wikitext(tmp_path, CAUSAL_MODELS)


@pytest.mark.large
def test_every_model_on_sst2(tmp_path):
    run_glue(tmp_path, "sst2", COMPARED_MODELS)


@pytest.mark.large
@pytest.mark.parametrize("task", glue.TASKS)
def test_every_glue_task(tmp_path, task):
    run_glue(tmp_path, task, ("gpt",))


@pytest.mark.large
def test_every_model_on_squad(tmp_path):
    run_squad(tmp_path, "1.1", COMPARED_MODELS)
