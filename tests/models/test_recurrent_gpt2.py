import keras
import numpy as np
import pytest

from kerasseq.models import RecurrentGPT2
from kerasseq.models import build_model
from tests.models.model_checks import assert_reloads
from tests.testing import value_and_grad

VOCAB = 50
HIDDEN = 32
SEGMENT = 4
SEQ_LEN = 12


def _backbone(**overrides):
    return build_model(
        "gpt2",
        "causal_lm",
        "tiny",
        vocabulary_size=VOCAB,
        max_sequence_length=8,
        hidden_dim=HIDDEN,
        num_layers=2,
        num_heads=4,
        **overrides,
    ).backbone


def _model(**kwargs):
    return RecurrentGPT2(_backbone(), segment_length=SEGMENT, **kwargs)


def _inputs(batch=3, seq_len=SEQ_LEN, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (batch, seq_len)).astype("int32")
    mask = np.ones((batch, seq_len), bool)
    mask[-1, 9:] = False
    ids[~mask] = 0
    return {"token_ids": ids, "padding_mask": mask}


def _open_gate(model, seed=1):
    """Opens the gate on every channel (tanh(alpha) near +-0.8)."""
    rng = np.random.default_rng(seed)
    alpha = rng.choice([-1.0, 1.0], HIDDEN) * rng.uniform(1.0, 1.5, HIDDEN)
    model.gate_alpha.assign(alpha.astype("float32"))


def _open_model_on_unpadded_rows():
    """A model with its gate open, 2 rows of inputs without padding, and
    the model's logits on them."""
    model = _model()
    _open_gate(model)
    inputs = _inputs(batch=2)
    inputs["padding_mask"][:] = True
    return model, inputs, _logits(model, inputs)


def _logits(model, inputs):
    return keras.ops.convert_to_numpy(model(inputs))


@pytest.mark.parametrize("cell,summary", [("gru", "mean"), ("lstm", "last")])
def test_closed_gate_gives_the_backbone_on_each_segment(cell, summary):
    model = _model(cell=cell, summary=summary)
    backbone = model.backbone
    inputs = _inputs()
    expected = []
    for k in range(SEQ_LEN // SEGMENT):
        part = {
            key: v[:, k * SEGMENT : (k + 1) * SEGMENT]
            for key, v in inputs.items()
        }
        hidden = backbone(part)
        expected.append(
            keras.ops.convert_to_numpy(
                backbone.token_embedding(hidden, reverse=True)
            )
        )
    expected = np.concatenate(expected, axis=1)
    logits = _logits(model, inputs)
    assert logits.dtype == np.float32
    assert logits.shape == (3, SEQ_LEN, VOCAB)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)


def test_state_carries_forward_only():
    model, inputs, base = _open_model_on_unpadded_rows()
    for t in (1, 5, 9):
        changed = {k: v.copy() for k, v in inputs.items()}
        changed["token_ids"][:, t] = (changed["token_ids"][:, t] + 7) % VOCAB
        logits = _logits(model, changed)
        diff = np.abs(logits - base).max(axis=(0, 2))
        # nothing before t moves, in its segment or earlier ones
        np.testing.assert_array_equal(diff[:t], 0)
        assert diff[t] > 1e-4
        # every later segment hears of it through the state
        end = (t // SEGMENT + 1) * SEGMENT
        for start in range(end, SEQ_LEN, SEGMENT):
            assert diff[start : start + SEGMENT].min() > 1e-5, (t, start)


def test_padding_and_lengths_off_the_segment_grid():
    model, inputs, full = _open_model_on_unpadded_rows()
    # a length that is not a multiple of segment_length is padded inside:
    # the logits of the tokens it holds are those of the longer sequence
    short = {k: v[:, :10] for k, v in inputs.items()}
    np.testing.assert_allclose(_logits(model, short), full[:, :10], atol=1e-5)
    # padding at the end of the sequence changes no real token's logits
    padded = {
        "token_ids": np.pad(short["token_ids"], [(0, 0), (0, 6)]),
        "padding_mask": np.pad(short["padding_mask"], [(0, 0), (0, 6)]),
    }
    np.testing.assert_allclose(
        _logits(model, padded)[:, :10], full[:, :10], atol=1e-5
    )
    # a segment without real tokens leaves the state as it was: the
    # segment after it reads as if it came right after the one before
    gap = {k: v.copy() for k, v in inputs.items()}
    gap["token_ids"][:, 4:8] = 0
    gap["padding_mask"][:, 4:8] = False
    joined = {
        k: np.concatenate([v[:, :4], v[:, 8:]], 1) for k, v in inputs.items()
    }
    np.testing.assert_allclose(
        _logits(model, gap)[:, 8:], _logits(model, joined)[:, 4:], atol=1e-5
    )


def _gradients(bptt_segments, segment):
    """Gradients of one segment's loss: summed |.| of the token table rows
    of each segment's tokens, and of the cell's kernel."""
    model = _model(bptt_segments=bptt_segments)
    _open_gate(model)
    # segment k holds only tokens 1+4k .. 4+4k; the loss is one logit of a
    # token in none of them, so a table row of an earlier segment's token
    # gets gradient only through that segment's input embeddings
    ids = np.array([np.arange(1, 13), np.arange(12, 0, -1)], "int32")
    ids[1] = ids[1].reshape(3, 4)[::-1].reshape(-1)
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}
    target = 30
    variables = model.trainable_variables
    paths = [v.path for v in variables]
    table = paths.index(model.backbone.token_embedding.embeddings.path)
    kernel = paths.index(model.cell.kernel.path)
    values = [keras.ops.convert_to_numpy(v.value) for v in variables]
    fixed = [v.value for v in model.non_trainable_variables]
    start = segment * SEGMENT

    def loss(*weights):
        logits, _ = model.stateless_call(list(weights), fixed, inputs)
        return keras.ops.sum(logits[:, start : start + SEGMENT, target])

    _, grads = value_and_grad(loss, *values)
    rows = np.abs(grads[table]).sum(axis=1)
    by_segment = [
        rows[1 + SEGMENT * k : 1 + SEGMENT * (k + 1)] for k in range(3)
    ]
    # TensorFlow gives None (an object array here) for a gradient cut off
    # entirely
    cell = grads[kernel]
    cell = 0.0 if cell.dtype == object else np.abs(cell).sum()
    return by_segment, cell


def test_truncated_backpropagation_through_segments():
    # through every segment: the third segment's loss reaches the first's
    rows, cell = _gradients(None, segment=2)
    assert rows[0].min() > 0 and rows[1].min() > 0 and rows[2].min() > 0
    assert cell > 0
    # windows of one segment: nothing crosses a segment boundary, and the
    # cell gets no gradient
    rows, cell = _gradients(1, segment=2)
    np.testing.assert_array_equal(rows[0], 0)
    np.testing.assert_array_equal(rows[1], 0)
    assert rows[2].min() > 0
    assert cell == 0
    # windows of two segments, {1, 2} and {3}: the second segment's loss
    # reaches the first, the third's starts a new window
    rows, cell = _gradients(2, segment=1)
    assert rows[0].min() > 0 and rows[1].min() > 0 and cell > 0
    rows, cell = _gradients(2, segment=2)
    np.testing.assert_array_equal(rows[0], 0)
    np.testing.assert_array_equal(rows[1], 0)
    assert cell == 0


# ~90 s (the segment loop's XLA compile); gradients through the segments
# are checked in the default suite (test_truncated_backpropagation_...)
@pytest.mark.large
def test_fit_memorises_with_jit_compile():
    # dropout as in GPT-2's checkpoints, drawn in every segment
    model = RecurrentGPT2(
        _backbone(dropout=0.1),
        segment_length=SEGMENT,
        cell="lstm",
        summary="last",
        bptt_segments=2,
    )
    inputs = _inputs(batch=4, seq_len=SEQ_LEN + 1, seed=3)
    x = {k: v[:, :-1] for k, v in inputs.items()}
    labels = inputs["token_ids"][:, 1:]
    weights = inputs["padding_mask"][:, 1:].astype("float32")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    history = model.fit(
        x, labels, sample_weight=weights, batch_size=4, epochs=3, verbose=0
    )
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses
    # training opened the gate
    assert np.abs(keras.ops.convert_to_numpy(model.gate_alpha)).max() > 0


def test_symbolic_call_and_mixed_precision():
    model = _model(state_dim=16)
    inputs = _inputs()
    symbolic = {
        k: keras.KerasTensor(v.shape, dtype=str(v.dtype))
        for k, v in inputs.items()
    }
    spec = model.compute_output_spec(symbolic)
    assert tuple(spec.shape) == (3, SEQ_LEN, VOCAB)
    restored = RecurrentGPT2.from_config(model.get_config())
    assert restored.get_config() == model.get_config()
    assert restored.count_params() == model.count_params()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = _model(cell="lstm")
        _open_gate(mixed)
        logits = mixed(inputs)
        dtype = keras.backend.standardize_dtype(logits.dtype)
        assert dtype == "float32"
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(logits)))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_saved_model_gives_identical_outputs(tmp_path):
    model = _model(cell="lstm", state_dim=24, summary="last", bptt_segments=3)
    _open_gate(model)
    assert_reloads(model, _inputs(), tmp_path)


@pytest.mark.parametrize("cell,summary", [("gru", "mean"), ("lstm", "last")])
def test_generate_is_greedy_across_segments(cell, summary):
    model = _model(cell=cell, summary=summary)
    _open_gate(model)
    prompt = np.random.default_rng(5).integers(1, VOCAB, (2, 5)).astype("int32")
    # 14 tokens: the prompt crosses a segment boundary, then two more
    generated = model.generate(prompt, max_new_tokens=9)
    assert generated.shape == (2, 14)
    assert generated.dtype == np.int32
    np.testing.assert_array_equal(generated[:, :5], prompt)
    logits = _logits(
        model,
        {"token_ids": generated, "padding_mask": np.ones((2, 14), bool)},
    )
    np.testing.assert_array_equal(logits[:, 4:-1].argmax(-1), generated[:, 5:])
    # sampling is seeded
    a = model.generate(prompt, 9, temperature=1.0, seed=3)
    b = model.generate(prompt, 9, temperature=1.0, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, :5], prompt)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"segment_length": 0}, "segment_length"),
        ({"segment_length": "4"}, "segment_length"),
        ({"segment_length": 9}, "max_sequence_length=8"),
        ({"cell": "rnn"}, "`cell`.*'rnn'"),
        ({"state_dim": 0}, "state_dim"),
        ({"state_dim": 2.5}, "state_dim"),
        ({"summary": "max"}, "`summary`.*'max'"),
        ({"bptt_segments": 0}, "bptt_segments"),
        ({"bptt_segments": True}, "bptt_segments"),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs = {"segment_length": SEGMENT, **kwargs}
    with pytest.raises(ValueError, match=match):
        RecurrentGPT2(_backbone(), **kwargs)


def test_bad_backbones():
    with pytest.raises(ValueError, match="SequenceBackbone"):
        RecurrentGPT2(keras.layers.Dense(4), segment_length=SEGMENT)
    encoder = build_model(
        "transformer",
        "token_classification",
        "tiny",
        vocabulary_size=VOCAB,
        num_classes=2,
        max_sequence_length=8,
    ).backbone
    with pytest.raises(ValueError, match="causal"):
        RecurrentGPT2(encoder, segment_length=SEGMENT)
    features = build_model(
        "lstm", "token_classification", "tiny", feature_dim=3, num_classes=2
    ).backbone
    with pytest.raises(ValueError, match="token ids"):
        RecurrentGPT2(features, segment_length=SEGMENT)


def test_generate_bad_input():
    model = _model()
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(np.ones((1, 3), "int32"), 0)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(np.ones((1, 3), "int32"), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="token_ids"):
        model.generate(np.ones((3,), "int32"), 2)
