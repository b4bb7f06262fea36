"""Argument checks shared by the ops, with messages that say what was
received and what is expected."""

import keras
import numpy as np

MODES = ("auto", "recurrent", "chunk", "parallel")


def check_mode(mode, allowed, name="mode"):
    """Raises `ValueError` unless `mode` is in `allowed`."""
    if mode not in allowed:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected one "
            f"of {list(allowed)}, got {mode!r}."
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


def check_shape(name, x, shape, expected):
    """Raises `ValueError` unless `x.shape` equals `shape`.

    `None` entries of `shape` match any size.
    """
    actual = tuple(x.shape)
    ok = len(actual) == len(shape) and all(
        s is None or a is None or a == s
        for a, s in zip(actual, shape, strict=True)
    )
    if not ok:
        raise ValueError(
            f"Received an invalid shape for argument `{name}`, expected "
            f"{expected} = {tuple(shape)}, got shape {actual}."
        )


def check_static_length(name, x):
    """Raises `ValueError` unless axis 1 (time) of `x` is known when
    tracing: the compiled loops run a fixed number of steps."""
    if x.shape[1] is None:
        raise ValueError(
            f"Received an invalid shape for argument `{name}`, expected a "
            f"static sequence length T, got shape {tuple(x.shape)}."
        )


def check_int(name, value, minimum=1):
    """Raises `ValueError` unless `value` is an integer (Python or NumPy,
    not a bool) of at least `minimum` (1: positive, 0: non-negative)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        kind = {1: "a positive", 0: "a non-negative"}.get(
            minimum, f"an integer >= {minimum}, i.e. an"
        )
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected "
            f"{kind} integer, got {value!r}."
        )


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
