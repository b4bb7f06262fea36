"""`generate` runs the prompt in one pass (the backbone's `prefill`) and
then steps: greedy tokens are the argmax of one teacher-forced call, the
tokens are those of stepping through the prompt (as for mixers without
`prefill`), the backbone's prefill gives its call's outputs and the
stepped states, and one compiled prefill serves every prompt length of a
bucket."""

from unittest import mock

import keras
import numpy as np
import pytest

from kerasseq.models import RecurrentGPT2
from kerasseq.models import SequenceBackbone
from kerasseq.models import build_model
from kerasseq.models import generation
from kerasseq.models.generation import Sampler
from kerasseq.models.generation import prefill_length
from kerasseq.ops.dispatch import compile_function

VOCAB = 20


def _model(name):
    return build_model(
        name, "causal_lm", "tiny", vocabulary_size=VOCAB, max_sequence_length=64
    )


def _prompt(length, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1, VOCAB, (2, length)).astype("int32")


def generate_stepping_the_prompt(model, token_ids, max_new_tokens, **kw):
    """`model.generate` as it runs for mixers without `prefill`: the prompt
    through the compiled `step`, token by token."""
    with mock.patch.object(SequenceBackbone, "can_prefill", False):
        return model.generate(token_ids, max_new_tokens, **kw)


def check_greedy_tokens(model, generated, prompt_len):
    """Greedy tokens are the argmax of the logits of one teacher-forced
    call of the model over the generated sequence (the parallel forward,
    not the decoding step)."""
    logits = model(
        {"token_ids": generated, "padding_mask": np.ones_like(generated, bool)}
    )
    logits = keras.ops.convert_to_numpy(logits)[:, prompt_len - 1 : -1]
    np.testing.assert_array_equal(
        generated[:, prompt_len:], np.argmax(logits, axis=-1)
    )


# on JAX the default suite keeps mamba; `make test-all` runs gpt there too
IN_DEFAULT_SUITE = (
    ["mamba"] if keras.backend.backend() == "jax" else ["gpt", "mamba"]
)


@pytest.mark.parametrize("name", IN_DEFAULT_SUITE)
def test_generate_gives_the_tokens_of_token_by_token_decoding(name):
    check_generate(name)


def check_generate(name):
    model = _model(name)
    prompt = _prompt(11)
    generated = model.generate(prompt, 6)
    check_greedy_tokens(model, generated, 11)
    np.testing.assert_array_equal(
        generated, generate_stepping_the_prompt(model, prompt, 6)
    )
    # sampling draws the same tokens from the same seed
    np.testing.assert_array_equal(
        model.generate(prompt, 6, temperature=1.0, seed=3),
        generate_stepping_the_prompt(model, prompt, 6, temperature=1.0, seed=3),
    )
    if keras.backend.backend() == "tensorflow":
        # prompts of 1 to 16 tokens share one compiled prefill
        for length in (1, 16):
            model.generate(_prompt(length), 2)
        assert model._prefill_function.experimental_get_tracing_count() == 1


def _toy_step(token_ids, index, state):
    """A deterministic stand-in for a model's step: the state sums the
    tokens read; the logits depend on it, the token and the position."""
    state = state + keras.ops.cast(token_ids, "float32")
    vocabulary = keras.ops.arange(VOCAB, dtype="float32")
    index = keras.ops.cast(index, "float32")
    phase = (state[:, None] + 1.0) * vocabulary[None] * 0.37 + index
    return 3.0 * keras.ops.sin(phase), state


@pytest.mark.parametrize("temperature", [0.0, 1.5])
def test_compiled_decoding_loop_draws_the_python_loops_tokens(temperature):
    prompt = _prompt(3)
    state = keras.ops.convert_to_tensor([2.0, 5.0])
    logits, state = _toy_step(prompt[:, -1], 2, state)
    sampler = Sampler(temperature, seed=11)
    expected = sampler(_toy_step, prompt, logits, state, 9)[:, 3:]

    def decode(logits, state, start, count, seed, temperature):
        looped = Sampler(temperature if temperature else 0.0, seed=0)
        return looped.loop(_toy_step, logits, state, start, count, seed, 16)

    decode = compile_function(decode, variables=[])
    tensors = [keras.ops.convert_to_tensor(x, "int32") for x in (3, 9, 11)]
    tokens = decode(logits, state, *tensors, temperature)
    tokens = keras.ops.convert_to_numpy(tokens)
    # the first 9 of the loop's 16 slots hold the tokens, then zeros
    np.testing.assert_array_equal(tokens[:, :9], expected)
    assert not tokens[:, 9:].any()
    if temperature:  # another seed draws other tokens
        other = Sampler(temperature, seed=12)
        assert (
            other(_toy_step, prompt, logits, state, 9)[:, 3:] != expected
        ).any()


def test_sampled_tokens_follow_the_softmax_of_the_logits():
    # 4,000 draws (2 rows x 2,000 positions) from two distributions
    probabilities = np.array([[0.5, 0.3, 0.15, 0.05], [0.05, 0.05, 0.1, 0.8]])
    temperature = 2.0
    logits = np.log(probabilities) * temperature
    sampler = Sampler(temperature, seed=5)
    draw = compile_function(sampler.get_next_token, variables=[])
    tokens = np.stack(
        [
            keras.ops.convert_to_numpy(
                draw(logits, keras.ops.convert_to_tensor(i, "int32"))
            )
            for i in range(2000)
        ]
    )
    for row in range(2):
        counts = np.bincount(tokens[:, row], minlength=4)
        expected = 2000 * probabilities[row]
        # Pearson's chi-square, 3 degrees of freedom: 16.3 at p = 0.001
        assert ((counts - expected) ** 2 / expected).sum() < 16.3, counts
    # uniform noise: in (0, 1), mean 1/2, no two positions alike
    noise = keras.ops.convert_to_numpy(
        keras.ops.stack(
            [generation.uniform_noise(5, i, (3, 50)) for i in (0, 1)]
        )
    )
    assert 0 < noise.min() and noise.max() < 1
    assert abs(noise.mean() - 0.5) < 0.05
    assert not np.isclose(noise[0], noise[1]).any()


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="on JAX in make test-all only (test_prefill_generate_every_model)",
)
def test_backbone_prefill_is_call_and_leaves_the_stepped_states():
    # parallel blocks, rotary positions, no position table
    check_backbone_prefill("pythia")


def check_backbone_prefill(name):
    backbone = _model(name).backbone
    ids = _prompt(9, seed=1)
    full = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids, bool)})
    states = backbone.get_initial_state(2, max_length=16)
    for t in range(7):
        _, states = backbone.step(ids[:, t], t, states)
    # the first 7 tokens padded to 9 with other ids
    padded = np.concatenate([ids[:, :7], ids[:, :2][:, ::-1]], 1)
    hidden, prefilled = backbone.prefill(padded, length=7, max_length=16)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(hidden)[:, :7],
        keras.ops.convert_to_numpy(full)[:, :7],
        atol=1e-5,
    )
    for got, expected in zip(
        keras.tree.flatten(prefilled), keras.tree.flatten(states), strict=True
    ):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(got),
            keras.ops.convert_to_numpy(expected),
            rtol=1e-5,
            atol=1e-5,
        )
    # and prefilling from a state continues it: the last two tokens
    hidden, _ = backbone.prefill(ids[:, 7:], prefilled, position=7)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(hidden),
        keras.ops.convert_to_numpy(full)[:, 7:],
        atol=1e-5,
    )


def test_prompts_pad_to_buckets():
    assert [prefill_length(n, 1024) for n in (1, 16, 17, 100, 512)] == [
        16,
        16,
        32,
        128,
        512,
    ]
    # never past the cache
    assert prefill_length(100, 120) == 120


def check_recurrent_gpt2_generates_as_it_steps():
    backbone = build_model(
        "gpt2",
        "causal_lm",
        "tiny",
        vocabulary_size=VOCAB,
        max_sequence_length=16,
    ).backbone
    model = RecurrentGPT2(backbone, segment_length=8, summary="last")
    # open the gate so that segments feed the next ones
    model.gate_alpha.assign(np.full(model.gate_alpha.shape, 0.5, "float32"))
    # two whole segments and 3 tokens in the prompt, 7 new ones: one more
    # segment begins while decoding
    prompt = _prompt(19, seed=4)
    generated = model.generate(prompt, max_new_tokens=7)
    check_greedy_tokens(model, generated, 19)
    np.testing.assert_array_equal(
        generated, generate_stepping_the_prompt(model, prompt, 7)
    )
