import keras
import numpy as np
import pytest
from keras import ops

from kerasseq.ops import reference
from kerasseq.ops.block_sparse_attention import block_sparse_attention
from kerasseq.ops.block_sparse_attention import random_block_plan
from tests.ops.cases import assert_gradients_close
from tests.ops.cases import numpy
from tests.testing import compiled
from tests.testing import float64
from tests.testing import in_float64
from tests.testing import rel_rms
from tests.testing import value_and_grad

# (B, T, H, K, V, block_size, num_global_blocks, num_random_blocks): lengths
# that are no multiple of the block, every g in 0..3, tiny heads at T=1000
FORWARD_CASES = [
    (2, 63, 2, 8, 8, 4, 2, 3),
    (2, 63, 2, 8, 4, 8, 3, 2),
    (2, 63, 1, 8, 8, 16, 2, 0),
    (2, 100, 2, 8, 8, 8, 0, 3),
    (2, 100, 3, 8, 8, 16, 1, 2),
    (2, 100, 2, 4, 4, 4, 3, 4),
    (2, 1000, 1, 4, 4, 16, 2, 3),
    (2, 1000, 2, 4, 2, 8, 1, 2),
    (1, 1000, 1, 2, 2, 4, 3, 5),
    (2, 1, 1, 4, 4, 4, 2, 0),
    (2, 5, 2, 4, 4, 8, 0, 0),
]
GRAD_CASES = [
    (2, 63, 2, 8, 8, 4, 2, 3),
    (2, 100, 2, 8, 4, 8, 0, 3),
    (2, 100, 1, 4, 4, 16, 3, 1),
    (1, 1000, 1, 4, 4, 16, 1, 3),
]


def case_id(case):
    return "B{}-T{}-H{}-K{}-V{}-b{}-g{}-r{}".format(*case)


def make_inputs(case, seed=42):
    """q, k, v and a key mask padding the last batch element by a third."""
    batch, length, heads, key_dim, value_dim = case[:5]
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(batch, length, heads, key_dim))
    k = rng.normal(size=(batch, length, heads, key_dim))
    v = rng.normal(size=(batch, length, heads, value_dim))
    key_mask = np.ones((batch, length), bool)
    key_mask[-1, length - length // 3 :] = False
    return [x.astype(np.float32) for x in (q, k, v)] + [key_mask]


def run(case, **kwargs):
    block_size, num_global, num_random = case[5:]

    def fn(q, k, v, key_mask=None):
        return block_sparse_attention(
            q,
            k,
            v,
            block_size,
            num_global_blocks=num_global,
            num_random_blocks=num_random,
            key_mask=key_mask,
            **kwargs,
        )

    return fn


def quick(fn):
    """Eager on TensorFlow; compiled on JAX, whose eager ops compile one
    by one (`test_compiled_matches_reference` compiles on both)."""
    return fn if keras.backend.backend() == "tensorflow" else compiled(fn)


def case_mask(case, seed=0):
    """The case's `(H, T, T)` pattern, from the rules."""
    length, heads, block_size, num_global, num_random = case[1:3] + case[5:]
    num_blocks = -(-length // block_size)
    plan = random_block_plan(num_blocks, heads, num_global, num_random, seed)
    return reference.block_sparse_allowed(
        length, heads, block_size, num_global, plan
    )


def dense_reference(case, q, k, v, key_mask=None, seed=0):
    """The library's dense reference in float64, as NumPy."""
    return in_float64(
        reference.block_sparse_attention,
        q,
        k,
        v,
        *case[5:],
        seed=seed,
        key_mask=key_mask,
    )


@pytest.mark.parametrize("case", FORWARD_CASES, ids=case_id)
def test_forward_matches_dense_reference(case):
    q, k, v, key_mask = make_inputs(case)
    o = numpy(quick(run(case))(q, k, v, key_mask))
    assert o.shape == case[:3] + (case[4],)
    expected = dense_reference(case, q, k, v, key_mask)
    # every real query; padded queries have a query row of their own
    assert rel_rms(o[key_mask], expected[key_mask]) < 2e-6
    # without a key mask, every query
    o = numpy(quick(run(case))(q, k, v))
    assert rel_rms(o, dense_reference(case, q, k, v)) < 2e-6


@pytest.mark.parametrize("case", FORWARD_CASES[:2], ids=case_id)
def test_seed_selects_the_random_blocks(case):
    q, k, v, key_mask = make_inputs(case)
    o = numpy(quick(run(case, seed=7))(q, k, v, key_mask))
    expected = dense_reference(case, q, k, v, key_mask, seed=7)
    assert rel_rms(o[key_mask], expected[key_mask]) < 2e-6
    other = dense_reference(case, q, k, v, key_mask, seed=0)
    assert rel_rms(o[key_mask], other[key_mask]) > 1e-2


@pytest.mark.parametrize("case", [FORWARD_CASES[0], FORWARD_CASES[7]])
def test_compiled_matches_reference(case):
    q, k, v, key_mask = make_inputs(case)
    o = compiled(run(case))(q, k, v, key_mask)
    assert keras.backend.standardize_dtype(o.dtype) == "float32"
    expected = dense_reference(case, q, k, v, key_mask)
    assert rel_rms(numpy(o)[key_mask], expected[key_mask]) < 2e-6


@pytest.mark.parametrize("case", GRAD_CASES, ids=case_id)
def test_gradients_match_autodiff_of_dense_reference(case):
    q, k, v, key_mask = make_inputs(case)
    rng = np.random.default_rng(7)
    # weights on the real queries only: padded ones have no reference row
    w_o = rng.normal(size=case[:3] + (case[4],)) * key_mask[:, :, None, None]

    def loss(q, k, v):
        return ops.sum(run(case)(q, k, v, key_mask) * w_o.astype(np.float32))

    value, grads = value_and_grad(loss, q, k, v, jit=True)
    with float64():
        value_ref, grads_ref = value_and_grad(
            lambda q, k, v: ops.sum(
                reference.block_sparse_attention(
                    q, k, v, *case[5:], key_mask=key_mask
                )
                * w_o
            ),
            *(x.astype(np.float64) for x in (q, k, v)),
            jit=True,
        )
    np.testing.assert_allclose(value, value_ref, rtol=1e-5)
    assert_gradients_close(grads, grads_ref, "qkv")


def test_bfloat16_inputs():
    case = (2, 100, 2, 16, 16, 8, 2, 3)
    q, k, v, key_mask = make_inputs(case)
    q, k, v = (ops.cast(x, "bfloat16") for x in (q, k, v))
    o = compiled(run(case))(q, k, v, key_mask)
    assert keras.backend.standardize_dtype(o.dtype) == "bfloat16"
    q, k, v = (numpy(x) for x in (q, k, v))
    expected = dense_reference(case, q, k, v, key_mask)
    assert rel_rms(numpy(o)[key_mask], expected[key_mask]) < 1e-2


def test_rows_without_keys_stay_finite():
    case = (2, 63, 2, 4, 4, 4, 2, 2)
    q, k, v, _ = make_inputs(case)
    key_mask = np.ones((2, 63), bool)
    key_mask[1] = False

    def loss(q, k, v):
        return ops.sum(run(case)(q, k, v, key_mask))

    o = numpy(run(case)(q, k, v, key_mask))
    assert np.all(np.isfinite(o))
    first = [x[:1] for x in (q, k, v, key_mask)]
    expected = dense_reference(case, *first)
    assert rel_rms(o[:1], expected) < 2e-6
    _, grads = value_and_grad(loss, q, k, v, jit=True)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_dropout_reaches_every_row():
    # global rows (first and last block) and block rows alike
    case = (2, 100, 2, 4, 4, 8, 2, 2)
    q, k, v, key_mask = make_inputs(case)
    seen = []

    def drop_all(weights):
        seen.append(tuple(weights.shape))
        return weights * 0.0

    o = numpy(run(case, dropout=drop_all)(q, k, v, key_mask))
    np.testing.assert_array_equal(o, 0.0)
    # (B, H, g * b, n * b) and (B, H, R, b, S * b): slots are the 3 window
    # blocks, 2 global ones, 2 random ones (with a dummy in rows 1 and 11)
    assert sorted(seen) == [(2, 2, 11, 8, 56), (2, 2, 16, 104)]


@pytest.mark.parametrize("num_global", [0, 1, 2, 3])
def test_random_block_plan_rules(num_global):
    num_blocks, heads, num_random = 20, 3, 4
    plan = random_block_plan(num_blocks, heads, num_global, num_random, 42)
    assert plan.shape == (heads, num_blocks, num_random)
    assert plan.dtype == np.int32
    glob = reference.global_blocks(num_blocks, num_global)
    for h in range(heads):
        for i in range(num_blocks):
            if i in glob:
                assert np.all(plan[h, i] == -1)
                continue
            chosen = set(plan[h, i].tolist())
            assert len(chosen) == num_random  # no duplicates
            assert chosen <= set(range(num_blocks))
            assert not chosen & {i - 1, i, i + 1}
            assert not chosen & set(glob)
    rows = [i for i in range(num_blocks) if i not in glob]
    # different across heads and rows, the same for the same seed
    assert any((plan[0, i] != plan[1, i]).any() for i in rows)
    assert len({tuple(plan[0, i] - i) for i in rows}) > 1
    again = random_block_plan(num_blocks, heads, num_global, num_random, 42)
    np.testing.assert_array_equal(plan, again)
    other = random_block_plan(num_blocks, heads, num_global, num_random, 43)
    assert (plan != other).any()


@pytest.mark.parametrize("num_global", [0, 2])
def test_first_block_counts_block_zero_in_every_random_slot(num_global):
    # transformers' BigBird in eval mode: rand_attn all zeros
    case = (2, 63, 2, 8, 8, 4, num_global, 3)
    num_blocks, glob = 16, reference.global_blocks(16, num_global)
    plan = random_block_plan(num_blocks, 2, num_global, 3, 5, "first_block")
    rows = [i for i in range(num_blocks) if i not in glob]
    assert (plan[:, rows] == 0).all() and (plan[:, glob] == -1).all()
    q, k, v, key_mask = make_inputs(case)
    o = numpy(quick(run(case, random_blocks="first_block"))(q, k, v, key_mask))
    # dense reference: in non-global rows block 0's keys count 3 more times
    counts = case_mask(case[:-1] + (0,)).astype(np.float64)
    row_blocks = np.arange(63) // 4
    counts[:, ~np.isin(row_blocks, glob), :4] += 3
    q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
    scores = np.einsum("bthk,bshk->bhts", q64, k64) / np.sqrt(8)
    allowed = (counts[None] > 0) & key_mask[:, None, None, :]
    scores = np.where(allowed, scores, -np.inf)
    p = counts[None] * np.exp(scores - scores.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    expected = np.einsum("bhts,bshv->bthv", p, v64)
    assert rel_rms(o[key_mask], expected[key_mask]) < 2e-6
    seeded = dense_reference(case, q, k, v, key_mask)
    assert rel_rms(o[key_mask], seeded[key_mask]) > 1e-2
    with pytest.raises(ValueError, match="`random_blocks`.*got 'none'"):
        run(case, random_blocks="none")(q, k, v, key_mask)


def test_random_block_plan_is_uniform():
    # 300 draws of 3 among the 15 blocks outside row 10's window and globals
    counts = np.zeros(20)
    for seed in range(300):
        plan = random_block_plan(20, 1, 2, 3, seed)
        np.add.at(counts, plan[0, 10], 1)
    candidates = [b for b in range(1, 19) if b not in (9, 10, 11)]
    assert counts[[0, 9, 10, 11, 19]].sum() == 0
    expected = 300 * 3 / 15
    assert np.all(np.abs(counts[candidates] - expected) < 0.4 * expected)


def test_random_block_plan_uses_the_documented_generator():
    # numpy.random.default_rng(seed), heads then rows, sorted draws
    rng = np.random.default_rng(5)
    plan = random_block_plan(8, 2, 2, 2, 5)
    for h in range(2):
        for i in range(1, 7):
            window = {i - 1, i, i + 1, 0, 7}
            candidates = np.array([b for b in range(8) if b not in window])
            drawn = rng.choice(candidates, 2, replace=False)
            np.testing.assert_array_equal(plan[h, i], np.sort(drawn))


def _largest_intermediate(fn, *args):
    """The most elements of any intermediate tensor of `fn` and its
    gradient, from the traced graph (TF) or jaxpr (JAX)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def both(*args):
            with tf.GradientTape() as tape:
                tape.watch(args)
                value = fn(*args)
            return value, tape.gradient(value, args)

        specs = [tf.TensorSpec(x.shape, x.dtype) for x in args]
        graph = tf.function(both).get_concrete_function(*specs).graph
        outputs = [out for op in graph.get_operations() for out in op.outputs]
        return max(out.shape.num_elements() or 0 for out in outputs)
    import jax

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                yield int(np.prod(getattr(var.aval, "shape", ())))
            for param in eqn.params.values():
                subs = param if isinstance(param, (list, tuple)) else [param]
                for sub in subs:
                    sub = getattr(sub, "jaxpr", sub)
                    if hasattr(sub, "eqns"):
                        yield from walk(sub)

    both = jax.value_and_grad(fn, argnums=(0, 1, 2))
    return max(walk(jax.make_jaxpr(both)(*args).jaxpr))


def test_never_builds_a_dense_score_matrix():
    # T = 16384: a (T, T) score matrix would hold 2.7e8 elements
    case = (1, 16384, 1, 4, 4, 64, 2, 3)
    q, k, v, key_mask = make_inputs(case)

    def loss(q, k, v):
        return ops.sum(run(case)(q, k, v, key_mask))

    largest = _largest_intermediate(loss, q, k, v)
    # the block scores (B, H, R, b, S * b) with S = 5 + 3 slots
    assert largest == 254 * 64 * 8 * 64
    assert largest < 16384**2 / 30


def test_functional_model_with_unknown_batch_size():
    case = (3, 40, 2, 4, 4, 4, 2, 2)
    q, k, v, key_mask = make_inputs(case)
    inputs = [keras.Input(x.shape[1:], dtype=x.dtype) for x in (q, k, v)]
    mask = keras.Input((40,), dtype="bool")
    outputs = keras.layers.Lambda(lambda x: run(case)(*x))([*inputs, mask])
    model = keras.Model([*inputs, mask], outputs)
    o = model.predict([q, k, v, key_mask], batch_size=2, verbose=0)
    expected = dense_reference(case, q, k, v, key_mask)
    assert rel_rms(o[key_mask], expected[key_mask]) < 2e-6


def _bad(**changes):
    q, k, v, key_mask = make_inputs((2, 63, 2, 4, 4))
    args = dict(q=q, k=k, v=v, block_size=8, key_mask=key_mask)
    args.update(changes)
    return args


@pytest.mark.parametrize(
    "args, match",
    [
        (_bad(block_size=0), r"`block_size`.*positive integer, got 0"),
        (_bad(block_size=2.5), r"`block_size`.*got 2.5"),
        (_bad(num_global_blocks=-1), r"`num_global_blocks`.*got -1"),
        (_bad(num_random_blocks=-2), r"`num_random_blocks`.*got -2"),
        (_bad(seed=-1), r"`seed`.*non-negative integer, got -1"),
        # 8 blocks: row 2 has {0, 1, 2, 3, 7} fixed, 3 others
        (
            _bad(num_random_blocks=4),
            r"`num_random_blocks`.*at most 3 at sequence length 63.*got 4",
        ),
        (
            _bad(block_size=16, num_random_blocks=1),
            r"`num_random_blocks`.*at most 0 at sequence length 63.*got 1",
        ),
        (_bad(q=np.zeros((2, 63, 8), "float32")), r"`q`.*\(B, T, H, K\)"),
        (_bad(k=np.zeros((2, 63, 2, 5), "float32")), r"`k`.*\(2, 63, 2, 5\)"),
        (_bad(key_mask=np.ones((2, 62), bool)), r"`key_mask`.*\(2, 62\)"),
        (_bad(key_mask=np.ones((2, 63, 1), bool)), r"`key_mask`.*\(B, T\)"),
    ],
)
def test_invalid_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        block_sparse_attention(**args)


def test_random_block_plan_errors():
    with pytest.raises(ValueError, match=r"`num_random_blocks`.*at most 3"):
        random_block_plan(8, 1, 2, 4, 0)
    with pytest.raises(ValueError, match=r"`num_blocks`.*got 0"):
        random_block_plan(0, 1, 2, 1, 0)
    with pytest.raises(ValueError, match=r"`num_heads`.*got -1"):
        random_block_plan(8, -1, 2, 1, 0)
    # every block global: no random blocks to draw, any count is fine
    assert random_block_plan(2, 1, 2, 5, 0).shape == (1, 2, 5)
