"""Callbacks of the shared train loop."""

import os
import time

import keras
import numpy as np

from experiments.common import console


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_time_s` (wall seconds of the epoch's training) to logs.

    Place it before the loggers so that they record the time. Validation
    time is excluded: the timer stops at the last training batch.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._train_end = None

    def on_train_batch_end(self, batch, logs=None):
        self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            end = self._train_end or time.perf_counter()
            logs["epoch_time_s"] = end - self._start


class WandbLogger(keras.callbacks.Callback):
    """Logs each epoch's metrics to Weights & Biases.

    Offline mode (the default of every binary) writes the run under
    `run_dir/wandb` and needs neither an account nor a network; `wandb sync`
    uploads it later.

    Args:
        mode: `"offline"`, `"online"` or `"disabled"`.
        run_dir: directory of this model's results.
        name: run name.
        config: dict logged as the run's config.
    """

    def __init__(self, mode, run_dir, name, config):
        super().__init__()
        self.mode = mode
        self.run_dir = run_dir
        self.name = name
        self.config = config
        self._run = None

    def on_train_begin(self, logs=None):
        import wandb

        self._run = wandb.init(
            project="kerasseq",
            name=self.name,
            dir=self.run_dir,
            mode=self.mode,
            config=self.config,
            reinit="finish_previous",
        )

    def on_epoch_end(self, epoch, logs=None):
        if self._run is not None:
            self._run.log({"epoch": epoch, **(logs or {})})

    def on_train_end(self, logs=None):
        if self._run is not None:
            self._run.finish()
            self._run = None


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's `BackupAndRestore`, which also keeps the model's variables
    that are not weights: the states of its random seed generators
    (dropout's).

    Keras's checkpoint holds the weights and the optimizer's state; a run
    resumed from it drew other dropout masks than the uninterrupted run,
    because the seed generators restarted from their first state. With
    their states kept too, a resumed run ends exactly as an uninterrupted
    one (the train loop skips the batches trained before the checkpoint).
    """

    def _other_variables(self):
        weights = {w.path for w in self.model.weights}
        return [v for v in self.model.variables if v.path not in weights]

    def _states_path(self):
        return os.path.join(self.backup_dir, "other_variables.npz")

    def _save_model(self):
        # Keras saves here on every checkpoint (epoch or step); the states
        # are stored in the model's order (their paths carry global name
        # counters, which differ in a new process)
        super()._save_model()
        states = [np.asarray(v.numpy()) for v in self._other_variables()]
        tmp = self._states_path() + ".tmp.npz"
        np.savez(tmp, *states)
        os.replace(tmp, self._states_path())

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if not os.path.exists(self._states_path()):
            return
        variables = self._other_variables()
        with np.load(self._states_path()) as saved:
            states = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        if [s.shape for s in states] != [tuple(v.shape) for v in variables]:
            raise ValueError(
                f"{self._states_path()} does not match the model: "
                f"{len(states)} states saved, {len(variables)} in the model."
            )
        for variable, state in zip(variables, states, strict=True):
            variable.assign(state)


class TrainingPosition(keras.callbacks.Callback):
    """Keeps `console.position` up to date: the step (or epoch) training
    has reached and the one its last checkpoint resumes from, which
    Ctrl-C reports.

    Args:
        model_name: the registered model's name.
        steps_per_epoch: steps between checkpoints (Keras's epochs), or
            `None` when training counts epochs over the data.
        initial_epoch: the epoch a resumed run starts at.
    """

    def __init__(self, model_name, steps_per_epoch, initial_epoch=0):
        super().__init__()
        self._name = model_name
        self._per_epoch = steps_per_epoch
        self._epoch = initial_epoch
        self._note(self._units(initial_epoch), self._units(initial_epoch))

    def _units(self, epochs, batches=0):
        if self._per_epoch is None:
            return epochs
        return epochs * self._per_epoch + batches

    def _note(self, at, resumes_at):
        console.position.update(
            model=self._name,
            unit="epoch" if self._per_epoch is None else "step",
            at=at,
            resumes_at=resumes_at,
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._per_epoch is not None:
            console.position["at"] = self._units(self._epoch, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        # BackupAndRestore, placed before, has saved the checkpoint
        done = self._units(epoch + 1)
        self._note(done, done)

    def on_train_end(self, logs=None):
        console.position.clear()
