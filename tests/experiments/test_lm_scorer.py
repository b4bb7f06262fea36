"""`lm_scorer.Scorer` scores a Keras model in compiled programs, on either
backend (it joins `make test`'s JAX pass), with the log-likelihoods of the
model run op by op."""

import numpy as np
import pytest

from experiments.common import lm_scorer
from kerasseq.models import build_model
from tests import testing


@pytest.mark.parametrize("name", ["gpt", "mamba"])
def test_scorer_compiles_the_model_and_equals_its_direct_call(name):
    # on JAX compiling needs the model's variables passed in; without them
    # the scorer ran the model op by op (SST-2, mamba 129M: 0.5 docs/s on
    # JAX against 5.8 on TensorFlow)
    vocabulary = 23
    model = build_model(
        name,
        "causal_lm",
        "tiny",
        vocabulary_size=vocabulary,
        max_sequence_length=16,
    )
    rng = np.random.default_rng(0)
    requests = [
        (
            rng.integers(0, vocabulary, n).tolist(),
            rng.integers(0, vocabulary, m).tolist(),
        )
        for n, m in [(5, 1), (3, 4), (20, 2), (1, 1)]
    ]
    seen, restore = testing.recording_traced_calls(model)
    scored = lm_scorer.Scorer(model, max_length=16, batch_size=2)
    got = scored.loglikelihoods(requests)
    assert seen and all(seen), seen
    restore()
    for (context, continuation), (score, greedy) in zip(
        requests, got, strict=True
    ):
        # each request alone, unpadded, its last 17 tokens (16 read)
        whole = (context + continuation)[-17:]
        ids = np.asarray([whole[:-1]], np.int32)
        logits = np.asarray(
            model({"token_ids": ids, "padding_mask": np.ones_like(ids, bool)})
        )[0].astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        span = range(len(whole) - 1 - len(continuation), len(whole) - 1)
        expected = sum(log_probs[t, whole[t + 1]] for t in span)
        assert score == pytest.approx(expected, abs=1e-4)
        assert greedy == all(logits[t].argmax() == whole[t + 1] for t in span)
