"""kerasseq: modern RNNs and Transformers side by side in Keras 3."""

import importlib

from kerasseq import layers
from kerasseq import models
from kerasseq import ops

__version__ = "0.1.0"

# loaded on first use: the data pipelines and the checkpoint converters
_LAZY_SUBPACKAGES = ("data", "pretrained")


def __getattr__(name):
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f"kerasseq.{name}")
    raise AttributeError(f"module 'kerasseq' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY_SUBPACKAGES))
