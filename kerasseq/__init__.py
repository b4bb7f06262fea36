"""kerasseq: modern RNNs and Transformers side by side in Keras 3."""

import os

# plain data, no Keras: the names of the models, presets, tasks, ...
from kerasseq import catalogue  # noqa: F401
from kerasseq.lazy import lazy_submodules

# the backends kerasseq's kernels are written for
SUPPORTED_BACKENDS = ("tensorflow", "jax")


def _check_backend(backend, where):
    if backend not in SUPPORTED_BACKENDS:
        raise ImportError(
            f"kerasseq runs on the Keras backends "
            f"{' and '.join(SUPPORTED_BACKENDS)}, and {where} asks for "
            f"{backend!r}. Set KERAS_BACKEND=tensorflow (the default) or "
            "KERAS_BACKEND=jax."
        )


# checked before Keras loads: Keras itself fails obscurely on a backend
# whose framework is not installed (KERAS_BACKEND=torch without torch)
if "KERAS_BACKEND" in os.environ:
    _check_backend(os.environ["KERAS_BACKEND"], "KERAS_BACKEND")

import keras  # noqa: E402

_check_backend(keras.backend.backend(), "Keras's configuration")

from kerasseq.ops import dispatch  # noqa: E402

# on JAX, before its first computation: XLA's own code for reductions
dispatch.keep_reductions_in_xla()

from kerasseq import layers  # noqa: E402
from kerasseq import models  # noqa: E402
from kerasseq import ops  # noqa: E402

__version__ = "0.1.0"

# loaded on first use: the data pipelines and the checkpoint converters
_LAZY_SUBPACKAGES = ("data", "pretrained")
__getattr__, __dir__ = lazy_submodules(__name__, _LAZY_SUBPACKAGES)
