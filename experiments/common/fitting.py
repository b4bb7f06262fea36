"""`fit_and_evaluate`: one model's `model.fit` with the run's callbacks
(timing, checkpoints, metrics.csv, TensorBoard, W&B), resumed from its last
checkpoint with the batches trained before it skipped, then
`model.evaluate` (and the task's own scores) on every eval split.
"""

import os

import keras

from experiments.common import console
from experiments.common.callbacks import Checkpoints
from experiments.common.callbacks import EpochTimer
from experiments.common.callbacks import MetricsLog
from experiments.common.callbacks import WandbLogger
from experiments.common.callbacks import checkpoint_position


def fit_and_evaluate(
    config,
    name,
    data,
    evals,
    model,
    run_dir,
    steps_per_epoch,
    epochs,
    train,
    validation_freq=1,
):
    """`model.fit` with the run's callbacks from its last checkpoint, then
    every eval split. Returns each epoch's logs (`{name: [value, ...]}`)
    and the evaluations."""
    metrics_path = os.path.join(run_dir, "metrics.csv")
    backup_dir = os.path.join(run_dir, "backup")
    every_seconds = None
    if config.steps and config.checkpoint_minutes:
        every_seconds = 60 * config.checkpoint_minutes
    callbacks = [
        EpochTimer(),
        Checkpoints(backup_dir, name, steps_per_epoch, every_seconds),
        MetricsLog(metrics_path),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard")),
    ]
    if config.wandb_mode != "disabled":
        callbacks.append(
            WandbLogger(
                config.wandb_mode,
                run_dir,
                f"{config.task}-{name}",
                {**config.to_dict(), "model": name},
            )
        )
    validation = next(iter(evals.values()), None)

    def fit(first_epoch, last_epoch, steps, skip):
        # `skip`: the batches an uninterrupted run trained before this fit
        history = model.fit(
            train.skip(skip) if skip else train,
            steps_per_epoch=steps,
            initial_epoch=first_epoch,
            epochs=last_epoch,
            validation_data=validation,
            validation_freq=validation_freq,
            callbacks=callbacks,
            # Keras's own verbosity: 0 silent, 1 a progress bar, 2 a line
            verbose=min(config.verbose, 2),
        )
        return history.history

    epoch, within = checkpoint_position(backup_dir)
    logs = []
    try:
        if within:
            # a checkpoint within an epoch: its remaining batches first
            logs.append(
                fit(
                    epoch,
                    epoch + 1,
                    steps_per_epoch - within,
                    epoch * steps_per_epoch + within,
                )
            )
            epoch += 1
        if epoch < epochs:
            skip = epoch * steps_per_epoch if steps_per_epoch else 0
            logs.append(fit(epoch, epochs, steps_per_epoch, skip))
    finally:
        for callback in callbacks:
            if isinstance(callback, WandbLogger):
                callback.finish()
    history = {}
    for fitted in logs:
        for key, values in fitted.items():
            history.setdefault(key, []).extend(values)

    datasets, evals = evals, {}
    for split, dataset in datasets.items():
        # a step compiled for this split: splits differ in length, and a
        # reused step would be retraced with the length unknown, which the
        # scan kernels (static loop bounds, as XLA and TPUs want) refuse
        model.make_test_function(force=True)
        console.say(config, f"{name}: evaluating {split}")
        # a progress bar from --verbose=1 (a line where output is a file)
        evals[split] = model.evaluate(
            dataset, return_dict=True, verbose=1 if config.verbose else 0
        )
        if data.score is not None:
            console.say(config, f"{name}: scoring {split}")
            evals[split].update(data.score(model, split, run_dir))
    return history, evals
