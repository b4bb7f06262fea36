"""An unsupported Keras backend is refused with one clear line."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(__file__))


def _run(*args):
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KERAS_BACKEND": "torch"},
    )


def test_library_names_the_supported_backends():
    result = _run("-c", "import kerasseq")
    assert result.returncode != 0
    assert (
        "ImportError: kerasseq runs on the Keras backends tensorflow and jax, "
        "and KERAS_BACKEND asks for 'torch'"
    ) in result.stderr


def test_binary_refuses_in_one_line():
    result = _run("-m", "experiments.synthetic", "--steps=1")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "KERAS_BACKEND='torch' is not supported: kerasseq runs on "
        "tensorflow (the default) and jax."
    )
