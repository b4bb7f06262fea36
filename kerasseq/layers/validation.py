"""Argument checks shared by layers and models, with uniform messages,
and small helpers for building weights."""

from kerasseq.ops import checks


def check_positive_int(name, value, allow_none=False):
    """Raises `ValueError` unless `value` is a positive integer."""
    if value is None and allow_none:
        return
    checks.check_int(name, value)


def check_rate(name, value):
    """Raises `ValueError` unless `value` is a float in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"float in [0, 1), got {value!r}."
        )
    if not 0 <= value < 1:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"float in [0, 1), got {value!r}."
        )


def check_choice(name, value, choices):
    """Raises `ValueError` unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected one "
            f"of {sorted(choices)}, got {value!r}."
        )


def check_state(name, state, expected):
    """Raises `ValueError` unless `state` has the `expected` shape.

    `None` in `expected` or in the state's shape (an unknown size when
    tracing) matches any size.
    """
    got = tuple(state.shape)
    matches = len(got) == len(expected) and all(
        a is None or b is None or a == b
        for a, b in zip(got, expected, strict=True)
    )
    if not matches:
        raise ValueError(
            f"Received an invalid shape for argument `{name}`, expected "
            f"{tuple(expected)}, got {got}."
        )


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
        check_state("padding_mask", padding_mask, tuple(x.shape[:2]))


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


def fresh_initializer(initializer):
    """A new instance of a Keras initializer with the same config: one
    unseeded instance reused for several weights would give them all the
    same values."""
    return initializer.__class__.from_config(initializer.get_config())
