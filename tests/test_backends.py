"""An unsupported Keras backend is refused with one clear line; on JAX,
importing kerasseq keeps reductions in XLA's own CPU code."""

import importlib.util
import os
import subprocess
import sys

import pytest

from kerasseq.ops import dispatch

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


JAX_REDUCTION = """
import os, jax, jax.numpy as jnp
import kerasseq
hlo = jax.jit(lambda x: x.sum(axis=1)).lower(jnp.ones((8, 16, 512))).compile()
print(os.environ.get("XLA_FLAGS"))
print("ynn" in hlo.as_text())
"""


def _run_python(code, **env):
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not installed"
)
def test_jax_reductions_compile_to_xla_code_unless_the_user_chose():
    # YNNPACK reductions made the scan loops 4-5x slower than on TensorFlow
    env = {"KERAS_BACKEND": "jax", "XLA_FLAGS": ""}
    result = _run_python(JAX_REDUCTION, **env)
    assert result.returncode == 0, result.stderr
    flags, uses_ynn = result.stdout.split("\n")[:2]
    assert flags == dispatch.XLA_CPU_FLAG and uses_ynn == "False"
    # a user's own setting stands
    chosen = "--xla_cpu_experimental_ynn_fusion_type=reduce"
    result = _run_python(JAX_REDUCTION, **{**env, "XLA_FLAGS": chosen})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == [chosen, "True"]
    # too late once JAX has computed: a warning says what to do
    late = "import jax.numpy as jnp; jnp.ones(2).sum(); " + JAX_REDUCTION
    result = _run_python(late, **env)
    assert result.returncode == 0, result.stderr
    assert "Import kerasseq first" in result.stderr


def test_import_writes_nothing_to_stderr(tmp_path):
    # TensorFlow's C++ code logs INFO lines (oneDNN, missing CUDA drivers)
    # while its libraries load; a user's `import kerasseq` shows none
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(KERAS_BACKEND="tensorflow", PYTHONPATH=os.getcwd())
    result = subprocess.run(
        [sys.executable, "-c", "import kerasseq; print(kerasseq.__version__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() and result.stderr == "", result.stderr
