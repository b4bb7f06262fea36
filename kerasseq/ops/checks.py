"""Argument checks shared by the ops, with messages that say what was
received and what is expected."""

import keras

MODES = ("auto", "recurrent", "chunk", "parallel")


def check_mode(mode, allowed):
    """Raises `ValueError` unless `mode` is in `allowed`."""
    if mode not in allowed:
        raise ValueError(
            f"Received an invalid value for argument `mode`, expected one of "
            f"{list(allowed)}, got {mode!r}."
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


def check_chunk_size(chunk_size):
    """Raises `ValueError` unless `chunk_size` is a positive integer."""
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int)
        or chunk_size <= 0
    ):
        raise ValueError(
            "Received an invalid value for argument `chunk_size`, expected a "
            f"positive integer, got {chunk_size!r}."
        )
