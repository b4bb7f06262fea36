"""Two repairs to Keras 3.15's TensorFlow trainer under `tf.distribute`.

1. Under any strategy, `fit` first builds the model from one batch of the
   distributed dataset, averaged across replicas with `strategy.reduce`.
   Only the batch's shapes and dtypes are used, but the average fails on
   boolean inputs (our padding masks) under `MirroredStrategy`, and on
   every per-replica tensor under `MultiWorkerMirroredStrategy`. The
   repaired build takes the first local replica's part instead.
2. Under `MultiWorkerMirroredStrategy`, every step's losses and metrics
   are averaged across workers with `strategy.reduce("MEAN", value,
   axis=0)`, which fails on the scalars they are (keras-team/keras#20585).
   The repaired reduction averages the values themselves (`axis=None`),
   which is what Keras computes for the single-machine strategies.

`patch()` applies both, once; `distribute.get_strategy` calls it for the
strategies of several replicas.
"""

from keras.src import tree
from keras.src.backend.tensorflow import trainer as tf_trainer

_original_reduce = tf_trainer.reduce_per_replica


def _reduce_per_replica(values, strategy, reduction):
    if tf_trainer._collective_all_reduce_multi_worker(strategy) and (
        reduction in ("auto", "mean")
    ):
        return tree.map_structure(
            lambda value: strategy.reduce("MEAN", value, axis=None), values
        )
    return _original_reduce(values, strategy, reduction)


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    if self._distribute_strategy is None:
        return
    if iterator is not None:
        for _, _, batches in iterator:
            data_batch = tree.map_structure(
                lambda value: (
                    self.distribute_strategy.experimental_local_results(value)[
                        0
                    ]
                ),
                next(batches),
            )
            break
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def patch():
    """Applies the two repairs (idempotent)."""
    tf_trainer.reduce_per_replica = _reduce_per_replica
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
