"""Argument checks for all of kerasseq (ops, layers, models, converters),
with messages that say what was received and what is allowed.

The one home of validation: the ops sit below every other package, so
layers and models import their checks from here as the ops do, and a
message reads the same wherever a value is refused."""

import keras
import numpy as np
from keras import ops

MODES = ("auto", "recurrent", "chunk", "parallel")


def check_choice(name, value, choices):
    """Raises `ValueError` unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected one "
            f"of {list(choices)}, got {value!r}."
        )


def check_float(name, x):
    """Raises `ValueError` unless `x` has a floating (or complex) dtype."""
    dtype = keras.backend.standardize_dtype(x.dtype)
    if not (
        dtype.startswith("float")
        or dtype.startswith("bfloat")
        or dtype.startswith("complex")
    ):
        raise ValueError(
            f"Received an invalid dtype for argument `{name}`, expected a "
            f"floating-point tensor, got {dtype}."
        )


def float_tensor(name, x):
    """`x` as a tensor, checked to be floating (or complex) as
    `check_float` checks it."""
    x = ops.convert_to_tensor(x)
    check_float(name, x)
    return x


def check_rank(name, x, ranks, expected):
    """Raises `ValueError` unless `x` has one of the `ranks`.

    Args:
        name: argument name.
        x: the tensor.
        ranks: int or tuple of ints.
        expected: a description of the expected shape, e.g. `"(B, T, Dm)"`.
    """
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if len(x.shape) not in ranks:
        raise ValueError(
            f"Received an invalid shape for argument `{name}`, expected "
            f"{expected}, got shape {tuple(x.shape)}."
        )


def check_shape(name, x, shape, expected=None):
    """Raises `ValueError` unless `x.shape` equals `shape`.

    `None` entries of `shape`, or of `x.shape` (a size unknown when
    tracing), match any size. `expected` names the dimensions in the
    message, e.g. `"(B, T)"`.
    """
    actual = tuple(x.shape)
    ok = len(actual) == len(shape) and all(
        s is None or a is None or a == s
        for a, s in zip(actual, shape, strict=True)
    )
    if not ok:
        raise ValueError(
            f"Received an invalid shape for argument `{name}`, expected "
            f"{'' if expected is None else expected + ' = '}{tuple(shape)}, "
            f"got shape {actual}."
        )


def check_state(state, shapes):
    """Raises `ValueError` unless each part of a decoding state has its
    shape: `state[key]` against `shapes[key]` for every key of `shapes`
    (a dict, or a list for a tuple state); `None` sizes match any. The
    message names the part, e.g. `state['ssm']` or `state[0]`."""
    keys = shapes.keys() if isinstance(shapes, dict) else range(len(shapes))
    for key in keys:
        check_shape(f"state[{key!r}]", state[key], shapes[key])


def check_static_length(name, x):
    """Raises `ValueError` unless axis 1 (time) of `x` is known when
    tracing: the compiled loops run a fixed number of steps."""
    if x.shape[1] is None:
        raise ValueError(
            f"Received an invalid shape for argument `{name}`, expected a "
            f"static sequence length T, got shape {tuple(x.shape)}."
        )


def check_int(name, value, minimum=1, allow_none=False):
    """Raises `ValueError` unless `value` is an integer (Python or NumPy,
    not a bool) of at least `minimum` (1: positive, 0: non-negative,
    `None`: any), or `None` with `allow_none`."""
    if value is None and allow_none:
        return
    is_int = isinstance(value, (int, np.integer)) and not isinstance(
        value, bool
    )
    if not is_int or (minimum is not None and value < minimum):
        kind = {1: "a positive integer", 0: "a non-negative integer"}.get(
            minimum,
            "an integer" + ("" if minimum is None else f" >= {minimum}"),
        )
        if allow_none:
            kind += " or None"
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected "
            f"{kind}, got {value!r}."
        )


def is_number(value):
    """Whether `value` is a real number: a Python or NumPy int or float,
    not a bool."""
    number = isinstance(value, (int, float, np.integer, np.floating))
    return number and not isinstance(value, bool)


def check_number(name, value, expected, allowed):
    """Raises `ValueError` unless `value` is a real number (not a bool)
    for which `allowed(value)` holds; `expected` says which, e.g.
    `"a float in [0, 1)"`."""
    if not is_number(value) or not allowed(value):
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected "
            f"{expected}, got {value!r}."
        )


def check_rate(name, value):
    """Raises `ValueError` unless `value` is a float in [0, 1) (a dropout
    rate)."""
    check_number(name, value, "a float in [0, 1)", lambda v: 0 <= v < 1)


def check_input_width(name, x, rank, width, padding_mask=None):
    """Raises `ValueError` unless `x` has `rank` dimensions (3: a sequence
    `(batch_size, seq_len, width)`, 2: one step `(batch_size, width)`) and
    the last one is `width`, and unless `padding_mask`, when given, is
    `(batch_size, seq_len)` like the sequence."""
    if len(x.shape) != rank or x.shape[-1] != width:
        lead = "(batch_size, seq_len, " if rank == 3 else "(batch_size, "
        raise ValueError(
            f"Received an invalid shape for argument `{name}`, expected "
            f"{lead}{width}), got {tuple(x.shape)}."
        )
    if padding_mask is not None:
        check_shape("padding_mask", padding_mask, tuple(x.shape[:2]))


def resolve_head_dim(hidden_dim, num_heads, head_dim=None):
    """`head_dim`, or `hidden_dim // num_heads` when it is `None`; raises
    `ValueError` when the heads do not divide the width."""
    if head_dim is not None:
        return head_dim
    if hidden_dim % num_heads:
        raise ValueError(
            "Received an invalid value for argument `num_heads`: the input "
            f"width {hidden_dim} is not divisible by num_heads={num_heads}. "
            "Pass `head_dim` or change `num_heads`."
        )
    return hidden_dim // num_heads


def check_chunk_size(chunk_size):
    """Raises `ValueError` unless `chunk_size` is a positive integer."""
    check_int("chunk_size", chunk_size)


def check_qkv(q, k, v, op_name):
    """Checks `(B, T, H, K)` queries and keys and `(B, T, H, V)` values.

    Returns:
        `(B, T, H, K, V)`, with B possibly `None`; the others must be
        static.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_float(name, x)
    check_rank("q", q, 4, "(B, T, H, K)")
    check_rank("v", v, 4, "(B, T, H, V)")
    batch, length, heads, key_dim = q.shape
    value_dim = v.shape[-1]
    check_shape("k", k, (batch, length, heads, key_dim), "(B, T, H, K)")
    check_shape("v", v, (batch, length, heads, value_dim), "(B, T, H, V)")
    if None in (length, heads, key_dim, value_dim):
        raise ValueError(
            "Received inputs with an unknown static size: `q` has shape "
            f"{tuple(q.shape)} and `v` {tuple(v.shape)}; {op_name} needs "
            "static T, H, K and V (only the batch size may be unknown)."
        )
    return batch, length, heads, key_dim, value_dim
