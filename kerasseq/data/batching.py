"""Batched `tf.data` pipelines over arrays held in memory."""

import numpy as np
import tensorflow as tf


def array_dataset(
    inputs, labels, batch_size, seed, shuffle=False, drop_remainder=False
):
    """A batched dataset of `(inputs, label)` pairs as `model.fit` takes
    them.

    Args:
        inputs: dict input name -> array `(N, ...)` (e.g. `token_ids` and
            `padding_mask`); every array has the same first dimension.
        labels: array `(N, ...)`: class ids (kept as int32) or targets
            of a regression (kept as float32).
        batch_size: examples per batch.
        seed: the shuffling seed: a new order each pass, the same on every
            run.
        shuffle: shuffle the examples (training).
        drop_remainder: drop a last, smaller batch (training, so that every
            step has one static shape).

    Returns:
        A `tf.data.Dataset` of `({name: (batch, ...)}, (batch, ...))`.
    """
    count = len(labels)
    for name, array in inputs.items():
        if len(array) != count:
            raise ValueError(
                f"Input {name!r} has {len(array)} rows, but there are "
                f"{count} labels."
            )
    tensors = {k: tf.convert_to_tensor(v) for k, v in inputs.items()}
    labels = np.asarray(labels)
    dtype = np.float32 if np.issubdtype(labels.dtype, np.floating) else np.int32
    targets = tf.convert_to_tensor(labels.astype(dtype))

    def gather(indices):
        batch = {k: tf.gather(v, indices) for k, v in tensors.items()}
        return batch, tf.gather(targets, indices)

    dataset = tf.data.Dataset.range(count)
    if shuffle:
        dataset = dataset.shuffle(
            count, seed=seed, reshuffle_each_iteration=True
        )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
