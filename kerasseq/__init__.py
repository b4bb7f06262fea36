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


class _QuietNativeStderr:
    """Silences file descriptor 2 while TensorFlow's shared libraries load:
    their C++ code logs INFO lines there (oneDNN, "Could not find cuda
    drivers", CPU instructions) before any log level is read, so
    TF_CPP_MIN_LOG_LEVEL cannot hide them. Python errors still surface
    (raised after the descriptor is restored). Kept when TensorFlow is
    already loaded or TF_CPP_MIN_LOG_LEVEL=0 asks for every line."""

    def __enter__(self):
        self.saved = None
        loaded = "tensorflow" in __import__("sys").modules
        if loaded or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
            return self
        try:
            self.saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        except OSError:
            self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)
        return False


with _QuietNativeStderr():
    import keras  # noqa: E402

    _check_backend(keras.backend.backend(), "Keras's configuration")

    from kerasseq.ops import dispatch  # noqa: E402

# on JAX, before its first computation: XLA's own code for reductions (its
# warning, where it comes too late, must be seen)
dispatch.keep_reductions_in_xla()

with _QuietNativeStderr():
    from kerasseq import layers  # noqa: E402
    from kerasseq import models  # noqa: E402
    from kerasseq import ops  # noqa: E402

__version__ = "0.1.0"

# loaded on first use: the data pipelines and the checkpoint converters
_LAZY_SUBPACKAGES = ("data", "pretrained")
__getattr__, __dir__ = lazy_submodules(__name__, _LAZY_SUBPACKAGES)
