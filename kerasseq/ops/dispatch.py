"""The one place where kerasseq talks to a backend directly.

`keras.ops` covers almost everything; what it cannot express portably
(compiling a Python function for repeated use, backend-specific scans) lives
here so that layers stay backend-free.
"""

import keras


def compile_function(fn):
    """Compiles `fn` with XLA for repeated calls on the active backend.

    On TensorFlow this is `tf.function(jit_compile=True)`; on JAX the function
    is returned unchanged, since layers hold their weights as stateful
    variables that `jax.jit` would bake in as constants.

    Args:
        fn: a Python function of tensors (nested structures allowed).

    Returns:
        A callable with the same signature.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, reduce_retracing=True)
    return fn
