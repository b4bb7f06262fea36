"""What the heads' tests share: fit a small model until its training
accuracy shows it has learned the task; save and reload a model."""

import os

import keras
import numpy as np


class _StopWhenFitted(keras.callbacks.Callback):
    def __init__(self, accuracy):
        super().__init__()
        self.accuracy = accuracy

    def on_epoch_end(self, epoch, logs=None):
        if logs["accuracy"] >= self.accuracy:
            self.model.stop_training = True


def fit_until_fitted(model, x, y, accuracy, max_epochs, metric="accuracy"):
    """Compiles `model` (Adam at 5e-3, sparse cross-entropy on logits,
    XLA) and fits it on `(x, y)` in batches of 64 until an epoch's
    training accuracy (`metric`, logged as "accuracy") reaches `accuracy`,
    for at most `max_epochs` epochs."""
    model.compile(
        optimizer=keras.optimizers.Adam(5e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[metric],
        jit_compile=True,
    )
    model.fit(
        x,
        y,
        batch_size=64,
        epochs=max_epochs,
        verbose=0,
        callbacks=[_StopWhenFitted(accuracy)],
    )


def assert_reloads(model, inputs, directory):
    """Saves `model` to a .keras file in `directory` and loads it back: the
    copy has the model's class, config and number of weights, and gives
    the same outputs on `inputs`. Returns the copy."""
    expected = keras.ops.convert_to_numpy(model(inputs))
    path = os.path.join(directory, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    assert restored.get_config() == model.get_config()
    assert len(restored.weights) == len(model.weights)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(inputs)), expected
    )
    return restored
