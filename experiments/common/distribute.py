"""Picks the distribution strategy named by `--strategy`."""

import contextlib

import keras


def get_strategy(name):
    """Returns an object with a `scope()` for model building and compile.

    `auto` mirrors across local GPUs when there are several and otherwise
    uses the default strategy; on the JAX backend every name but `auto` and
    `default` is refused, since `tf.distribute` does not apply there.
    """
    if keras.backend.backend() != "tensorflow":
        if name not in ("auto", "default"):
            raise ValueError(
                f"--strategy={name} needs the TensorFlow backend; the active "
                f"backend is {keras.backend.backend()!r}. Use auto or default."
            )
        return _NoStrategy()
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


class _NoStrategy:
    num_replicas_in_sync = 1

    def scope(self):
        return contextlib.nullcontext()
