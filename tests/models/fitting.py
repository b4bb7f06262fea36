"""What the heads' learning tests share: fit a small model until its
training accuracy shows it has learned the task."""

import keras


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
