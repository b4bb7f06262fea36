"""The output head shared by the LRU-style linear RNNs: the readout of a
complex state and the GELU + gated linear unit of the LRU block."""

import keras
from keras import ops


def complex_readout(h, C_re, C_im):
    """`Re(C h)` for a complex state `h` `(..., N)` and `C = C_re + i C_im`
    `(N, H)`, in float32: `Re(h) C_re - Im(h) C_im`."""
    return ops.matmul(ops.real(h), C_re) - ops.matmul(ops.imag(h), C_im)


def build_glu(layer, hidden_dim):
    """Creates `layer.glu_out` and `layer.glu_gate`, Dense `hidden_dim ->
    hidden_dim` with biases in the layer's dtype policy."""
    for name in ("glu_out", "glu_gate"):
        dense = keras.layers.Dense(
            hidden_dim, dtype=layer.dtype_policy, name=name
        )
        dense.build((None, hidden_dim))
        setattr(layer, name, dense)


def apply_glu(layer, y):
    """`glu_out(gelu(y)) * sigmoid(glu_gate(gelu(y)))`, GELU in its tanh
    form as in the LRU's JAX reference code."""
    y = ops.gelu(y, approximate=True)
    return layer.glu_out(y) * ops.sigmoid(layer.glu_gate(y))
