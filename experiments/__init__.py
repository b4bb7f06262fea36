"""Experiment binaries: one per task family, over one shared train loop."""

import os
import sys

# a binary refuses an unsupported backend with one line, before anything
# imports Keras (kerasseq.SUPPORTED_BACKENDS says the same, for the library)
if os.environ.get("KERAS_BACKEND", "tensorflow") not in ("tensorflow", "jax"):
    sys.exit(
        f"KERAS_BACKEND={os.environ['KERAS_BACKEND']!r} is not supported: "
        "kerasseq runs on tensorflow (the default) and jax."
    )
