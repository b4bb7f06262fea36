"""`generate` with prefill against token-by-token decoding for every
causal model kind, the backbone's prefill for every mixer kind, and
`RecurrentGPT2` (`large`: compiles per model)."""

import keras
import numpy as np
import pytest

from kerasseq.layers.sequence_layer import SequenceLayer
from kerasseq.models import MODELS
from kerasseq.models import CausalLM
from kerasseq.models import SequenceBackbone
from kerasseq.models import build_model
from tests.models.test_prefill_generate import (
    IN_DEFAULT_SUITE as GENERATE_IN_DEFAULT_SUITE,
)
from tests.models.test_prefill_generate import VOCAB
from tests.models.test_prefill_generate import check_backbone_prefill
from tests.models.test_prefill_generate import check_generate
from tests.models.test_prefill_generate import check_greedy_tokens
from tests.models.test_prefill_generate import (
    check_recurrent_gpt2_generates_as_it_steps,
)
from tests.testing import one_model_per_mixer

pytestmark = pytest.mark.large

CAUSAL = [n for n in one_model_per_mixer() if MODELS[n].causal]


@pytest.mark.parametrize(
    "name", [n for n in CAUSAL if n not in GENERATE_IN_DEFAULT_SUITE]
)
def test_generate_gives_the_tokens_of_token_by_token_decoding(name):
    check_generate(name)


@pytest.mark.parametrize(
    "name",
    [n for n in CAUSAL if n != "pythia" or keras.backend.backend() == "jax"],
)
def test_backbone_prefill_is_call_and_leaves_the_stepped_states(name):
    check_backbone_prefill(name)


def test_recurrent_gpt2_generates_as_it_steps():
    check_recurrent_gpt2_generates_as_it_steps()


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_generate_under_mixed_precision(name):
    # prefill and step read weights outside `call`, where a mixed policy
    # does not autocast them
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_model(
        name, "causal_lm", "tiny", vocabulary_size=20, max_sequence_length=32
    )
    generated = model.generate(np.ones((2, 5), "int32"), max_new_tokens=4)
    assert generated.shape == (2, 9)
    assert generated.min() >= 0 and generated.max() < 20


@keras.saving.register_keras_serializable(package="kerasseq_tests")
class RunningSum(SequenceLayer):
    """A causal mixer that steps but has no `prefill`: the running sum of
    its inputs."""

    def build(self, input_shape):
        self.width = input_shape[-1]

    def call(self, inputs, padding_mask=None, training=None, mask=None):
        inputs, _ = self.mask_inputs(inputs, padding_mask, mask)
        return keras.ops.cumsum(inputs, axis=1)

    def get_initial_state(self, batch_size, max_length=None):
        return keras.ops.zeros((batch_size, self.width))

    def step(self, inputs, state):
        state = state + inputs
        return state, state


def test_a_mixer_without_prefill_steps_through_the_prompt():
    backbone = SequenceBackbone(
        mixer=RunningSum(),
        num_layers=1,
        hidden_dim=16,
        vocabulary_size=VOCAB,
        max_sequence_length=32,
    )
    model = CausalLM(backbone)
    assert not backbone.can_prefill
    prompt = np.random.default_rng(5).integers(1, VOCAB, (2, 7))
    prompt = prompt.astype("int32")
    generated = model.generate(prompt, max_new_tokens=4)
    check_greedy_tokens(model, generated, 7)
