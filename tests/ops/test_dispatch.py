"""`dispatch.compile_function`: one XLA program per input shape (and per
Python value among the arguments), that reads the variables' current
values, on TensorFlow and on JAX."""

import keras
import numpy as np

from kerasseq.ops.dispatch import compile_function


def test_compiled_function_reads_the_current_weights_and_traces_once():
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    traces = []

    def scaled(x, scale):
        traces.append(scale)
        return layer(x) * scale

    compiled = compile_function(scaled, variables=layer.variables)
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(compiled(x, 2.0)),
        2.0 * keras.ops.convert_to_numpy(layer(x)),
        rtol=1e-6,
    )
    # new weights are read, not the ones of the first call
    layer.kernel.assign(np.ones((4, 3), "float32"))
    layer.bias.assign(np.full((3,), 0.5, "float32"))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(compiled(x, 2.0)), np.full((2, 3), 9.0)
    )
    # other values of the same shape run the same program
    compiled(x + 1.0, 2.0)
    assert traces == [2.0]
    # a Python value is part of the program, as tf.function has it
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(compiled(x, 3.0)), np.full((2, 3), 13.5)
    )
    assert traces == [2.0, 3.0]
