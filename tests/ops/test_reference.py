"""The library's references (`kerasseq.ops.reference`) on tiny cases worked
out by hand, independently of the kernels they check. (The delta rule's is
`test_delta_rule.test_reference_matches_step_by_step_definition`.)"""

import numpy as np

from kerasseq.ops import reference
from tests.testing import in_float64


def test_linear_recurrence_is_a_geometric_sum():
    # a = 1/2, b = 1 from h = 0: h_t = 2 (1 - 2^-(t+1)); reversed, from the end
    a, b = np.full((1, 4, 1), 0.5), np.ones((1, 4, 1))
    h, last = in_float64(reference.linear_recurrence, a, b)
    np.testing.assert_allclose(h[0, :, 0], [1, 1.5, 1.75, 1.875])
    assert last[0, 0] == 1.875
    h, last = in_float64(reference.linear_recurrence, a, b, reverse=True)
    np.testing.assert_allclose(h[0, :, 0], [1.875, 1.75, 1.5, 1])
    # complex: a = i rotates the state a quarter turn per step
    h, _ = in_float64(
        reference.linear_recurrence, np.full((1, 3, 1), 1j), b[:, :3] + 0j
    )
    np.testing.assert_allclose(h[0, :, 0], [1, 1 + 1j, 1j])


def test_matrix_recurrence_with_a_shift():
    # A moves component 2 into component 1: h_t = (h2_{t-1} + b1, b2)
    A = np.array([[0.0, 1.0], [0.0, 0.0]])
    b = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    h, last = in_float64(
        reference.matrix_recurrence, A, b, initial_state=np.array([[0, 5.0]])
    )
    np.testing.assert_allclose(h[0], [[6, 2], [5, 4]])
    np.testing.assert_allclose(last[0], [5, 4])


def test_selective_scan_on_one_channel():
    # delta = 1, A = -log 2: the decay is 1/2; B = C = u = 1, D = 3
    ones = np.ones((1, 3, 1))
    y, h = in_float64(
        reference.selective_scan,
        ones,
        ones,
        np.array([[-np.log(2.0)]]),
        ones,
        ones,
        D=np.array([3.0]),
    )
    np.testing.assert_allclose(y[0, :, 0], [1 + 3, 1.5 + 3, 1.75 + 3])
    np.testing.assert_allclose(h[0], [[1.75]])
    # z gates the output by silu(z) = z sigmoid(z); softplus(0 + 0) = log 2
    z = np.full((1, 1, 1), 2.0)
    y, _ = in_float64(
        reference.selective_scan,
        ones[:, :1],
        np.zeros((1, 1, 1)),
        np.array([[0.0]]),
        ones[:, :1],
        ones[:, :1],
        z=z,
        delta_bias=np.zeros(1),
        delta_softplus=True,
    )
    np.testing.assert_allclose(y[0, 0, 0], np.log(2) * 2 / (1 + np.exp(-2)))


def test_selective_scan_groups():
    # 4 channels, 2 groups: channels 0, 1 read group 0; 2, 3 group 1
    u = np.ones((1, 1, 4))
    B = np.array([[[[1.0], [10.0]]]])  # (B, T, G, N)
    y, _ = in_float64(
        reference.selective_scan, u, u, np.zeros((4, 1)), B, np.ones_like(B)
    )
    np.testing.assert_allclose(y[0, 0], [1, 1, 10, 10])


def test_lstm_recurrence_one_step_and_a_padded_one():
    # U = 0; gates (i, f, g, o) = (0, 0, big, 0): c = 0.5 tanh(big) = 0.5,
    # h = 0.5 tanh(0.5); the padded second step keeps both
    gates = np.array([[[0.0, 0.0, 50.0, 0.0]] * 2])
    h, (h_last, c_last) = in_float64(
        reference.lstm_recurrence,
        gates,
        np.zeros((1, 4)),
        mask=np.array([[True, False]]),
    )
    np.testing.assert_allclose(h[0, :, 0], [0.5 * np.tanh(0.5)] * 2)
    np.testing.assert_allclose(c_last[0], [0.5])
    np.testing.assert_allclose(h_last[0], [0.5 * np.tanh(0.5)])


def test_linear_attention_averages_by_key_weight():
    # q . k_1 = 1, q . k_2 = 3: o_2 = (v_1 + 3 v_2) / 4, o_1 = v_1
    q = np.ones((1, 2, 1, 1))
    k = np.array([1.0, 3.0]).reshape(1, 2, 1, 1)
    v = np.array([4.0, 8.0]).reshape(1, 2, 1, 1)
    o, (s, z) = in_float64(reference.linear_attention, q, k, v)
    np.testing.assert_allclose(o[0, :, 0, 0], [4, 7], rtol=1e-5)
    assert s[0, 0, 0, 0] == 28 and z[0, 0, 0] == 4
    o, _ = in_float64(reference.linear_attention, q, k, v, causal=False)
    np.testing.assert_allclose(o[0, :, 0, 0], [7, 7], rtol=1e-5)


def test_attention_with_equal_scores_averages_the_allowed_values():
    # q = 0: every allowed key weighs the same
    length = 5
    q = np.zeros((1, length, 1, 2))
    v = np.arange(length, dtype=float).reshape(1, length, 1, 1)
    o = in_float64(reference.sliding_window_attention, q, q, v, window=2)
    # bidirectional window 2: keys t - 1, t, t + 1
    np.testing.assert_allclose(o[0, :, 0, 0], [0.5, 1, 2, 3, 3.5])
    o = in_float64(
        reference.sliding_window_attention, q, q, v, 1, causal=True, dilation=2
    )
    np.testing.assert_allclose(o[0, :, 0, 0], [0, 1, 1, 2, 3])
    no_keys = np.zeros((1, 1, 1, 1), bool)
    o = in_float64(reference.masked_attention, q[:, :1], q, v, no_keys)
    np.testing.assert_array_equal(o, 0.0)


def test_block_sparse_pattern_rules():
    # 4 blocks of 2, g = 2 (blocks 0 and 3), no random blocks: block 1 sees
    # blocks 0, 1, 2, 3; block 0 (global) sees everything
    allowed = reference.block_sparse_allowed(8, 1, 2, 2, np.zeros((1, 4, 0)))
    assert allowed.all()
    # g = 0, 4 blocks: block 0 sees blocks 0 and 1 only
    allowed = reference.block_sparse_allowed(8, 1, 2, 0, np.zeros((1, 4, 0)))
    np.testing.assert_array_equal(allowed[0, 0], [1, 1, 1, 1, 0, 0, 0, 0])
    assert reference.global_blocks(5, 3) == [0, 1, 4]


def test_causal_conv_sums_the_window():
    x = np.arange(1.0, 5.0).reshape(1, 4, 1)
    y = in_float64(reference.causal_conv, x, np.array([[1.0], [10.0]]))
    np.testing.assert_allclose(y[0, :, 0], [10, 21, 32, 43])
