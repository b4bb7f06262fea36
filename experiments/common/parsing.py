"""Parsers of comma-list flag values, with errors that name the flag, what
was received and what is allowed."""

from absl import app


def parse_list(value, allowed, name):
    """`"a,b"` -> `["a", "b"]`, each in `allowed`; `"all"` -> all of them.

    Raises:
        app.UsageError: an unknown or empty list.
    """
    items = [v.strip() for v in value.split(",") if v.strip()]
    if items == ["all"]:
        return list(allowed)
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise app.UsageError(
            f"--{name}={value!r}: unknown {bad or 'empty'}; allowed: all or "
            f"{', '.join(allowed)}."
        )
    return items


def parse_lengths(value, name="lengths"):
    """`"1024,2048"` -> `[1024, 2048]`, positive integers.

    Raises:
        app.UsageError: anything else.
    """
    try:
        lengths = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        lengths = []
    if not lengths or min(lengths) <= 0:
        raise app.UsageError(
            f"--{name}={value!r}: expected a comma list of positive "
            "integers, e.g. 1024,2048,4096."
        )
    return lengths
