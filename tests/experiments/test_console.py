"""The console's parts that need no binary: which --verbose a binary
starts with, and which stderr lines the quiet console drops."""

import pytest

from experiments.common import console


@pytest.mark.parametrize(
    "argv,level",
    [
        ([], 2),
        (["--model=gpt"], 2),
        (["--verbose=3"], 3),
        (["--verbose", "0"], 0),
        (["--verbose=x"], 2),  # the flag parser reports it
        (["--verbose=7"], 2),  # likewise: out of range
        (["--verbose=1", "--verbose=3"], 1),
    ],
)
def test_verbosity_from_argv(argv, level):
    assert console.verbosity_from_argv(argv) == level


@pytest.mark.parametrize(
    "line,dropped",
    [
        (
            b"I0000 00:00:1796199817.210417    7799 cudart_stub.cc:31] "
            b"Could not find cuda drivers on your machine",
            True,
        ),
        (
            b"E0000 00:00:1796199299.324443    4878 cuda_platform.cc:52] "
            b"failed call to cuInit",
            True,
        ),
        (
            b"WARNING: All log messages before absl::InitializeLog() is "
            b"called are written to STDERR",
            True,
        ),
        (b"Traceback (most recent call last):", False),
        (b"ValueError: Invalid 0000 00:00:1.2 x.cc:1] text", False),
        (b"glue: error: --steps must be >= 0, got -1.", False),
    ],
)
def test_only_native_log_lines_are_dropped(line, dropped):
    assert bool(console._NATIVE_LOG.match(line)) == dropped
