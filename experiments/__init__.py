"""Experiment binaries: one per task family, over one shared train loop."""

import os
import sys

from experiments.common import console

# a binary refuses an unsupported backend with one line, before anything
# imports Keras (kerasseq.SUPPORTED_BACKENDS says the same, for the library)
if os.environ.get("KERAS_BACKEND", "tensorflow") not in ("tensorflow", "jax"):
    sys.exit(
        f"KERAS_BACKEND={os.environ['KERAS_BACKEND']!r} is not supported: "
        "kerasseq runs on tensorflow (the default) and jax."
    )

# `python -m experiments.<binary>` (argv[0] is "-m" while Python finds the
# module): quiet console unless --verbose=3, before TensorFlow is imported;
# the processes a binary starts inherit its choice
if sys.argv[:1] == ["-m"]:
    console.setup(sys.argv[1:])
elif console.is_quiet():
    console.quiet_python_logs()
