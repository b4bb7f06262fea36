"""kerasseq: modern RNNs and Transformers side by side in Keras 3."""

from kerasseq import layers
from kerasseq import models
from kerasseq import ops

__version__ = "0.1.0"
