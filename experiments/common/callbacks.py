"""Callbacks of the shared train loop."""

import csv
import json
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


class MetricsLog(keras.callbacks.CSVLogger):
    """Keras's `CSVLogger`, appending to `path`, whose rows follow the
    header the file already has.

    Keras orders a new fit's columns by its first epoch's logs, which lack
    the validation metrics when that epoch is not evaluated: a resumed run
    appended its rows in another order than the header's.
    """

    def __init__(self, path):
        super().__init__(path, append=True)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                header = next(csv.reader(f), None)
            if header:
                self.keys = header[1:]  # after "epoch"


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

        if self._run is not None:  # a second fit of the same training
            return
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

    def finish(self):
        """Ends the W&B run; the train loop calls it after its last fit."""
        if self._run is not None:
            self._run.finish()
            self._run = None


def checkpoint_position(backup_dir):
    """Where the checkpoint in `backup_dir` stands: `(epoch, batches)`, the
    epoch a resumed run goes on with and how many of its batches were
    trained before the checkpoint (0 at an epoch's end); `(0, 0)` if none.
    """
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.exists(path):
        return 0, 0
    with open(path) as f:
        metadata = json.load(f)
    return int(metadata.get("epoch", 0)), int(metadata.get("batch", 0))


class Checkpoints(keras.callbacks.BackupAndRestore):
    """Keras's `BackupAndRestore` at the end of every epoch (the train
    loop's span between checkpoints) and, with `every_seconds`, also within
    an epoch once that long has passed since the last checkpoint; it keeps
    `console.position` (what Ctrl-C reports) up to date.

    Keras's checkpoint holds the weights and the optimizer's state. This one
    also holds the model's variables that are not weights (the states of
    its seed generators: a resumed run draws the dropout masks the
    uninterrupted run drew) and the metrics' running totals. A checkpoint
    within epoch `e` after `b` of its batches records `{"epoch": e, "batch":
    b}` (`checkpoint_position`); Keras resumes at an epoch's start, so the
    train loop finishes epoch `e` in a fit of its own over the remaining
    batches, which this callback continues from the saved totals. With the
    batches trained before the checkpoint skipped, a resumed run ends
    exactly as an uninterrupted one.

    Args:
        backup_dir: where the checkpoint is kept.
        model_name: the registered model's name, for Ctrl-C's line.
        steps_per_epoch: steps between epoch-end checkpoints, or `None`
            when training counts epochs over the data.
        every_seconds: seconds of training after which a checkpoint is
            written within an epoch; `None`: at epochs' ends only.
    """

    def __init__(
        self, backup_dir, model_name, steps_per_epoch, every_seconds=None
    ):
        super().__init__(backup_dir, delete_checkpoint=False)
        self._name = model_name
        self._per_epoch = steps_per_epoch
        self.every_seconds = every_seconds
        self._epoch, self._done = checkpoint_position(backup_dir)
        self._note_checkpoint()

    # -- where training stands, in steps (or epochs)

    def _units(self):
        if self._per_epoch is None:
            return self._epoch
        return self._epoch * self._per_epoch + self._done

    def _note_checkpoint(self):
        at = self._units()
        console.position.update(
            model=self._name,
            unit="epoch" if self._per_epoch is None else "step",
            at=at,
            resumes_at=at,
        )

    # -- the checkpoint's contents beyond Keras's

    def _other_variables(self):
        weights = {w.path for w in self.model.weights}
        return [v for v in self.model.variables if v.path not in weights]

    def _states_path(self):
        return os.path.join(self.backup_dir, "other_variables.npz")

    def _save_model(self):
        # the states go in the model's order (their paths carry global name
        # counters, which differ in a new process)
        super()._save_model()
        states = {
            f"{kind}_{i}": np.asarray(keras.ops.convert_to_numpy(v))
            for kind, variables in (
                ("variable", self._other_variables()),
                ("metric", self.model.metrics_variables),
            )
            for i, v in enumerate(variables)
        }
        tmp = self._states_path() + ".tmp.npz"
        np.savez(tmp, **states)
        os.replace(tmp, self._states_path())

    def _saved_states(self, kind, variables):
        with np.load(self._states_path()) as saved:
            names = sorted(
                (n for n in saved.files if n.startswith(kind + "_")),
                key=lambda n: int(n.rsplit("_", 1)[1]),
            )
            states = [saved[n] for n in names]
        if [s.shape for s in states] != [tuple(v.shape) for v in variables]:
            raise ValueError(
                f"{self._states_path()} does not match the model: "
                f"{len(states)} {kind} states saved, {len(variables)} in "
                "the model."
            )
        return states

    def _sync(self):
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:  # JAX keeps the state apart during an epoch
            sync()

    def _add_saved_totals(self):
        # Keras makes the compiled metrics as it first traces the train
        # step, after this epoch's start: the totals saved before the
        # checkpoint are added to the first batch's (every Keras metric's
        # state is a sum: totals, counts, confusion counts)
        self._sync()
        variables = self.model.metrics_variables
        states = self._saved_states("metric", variables)
        for variable, state in zip(variables, states, strict=True):
            variable.assign(keras.ops.convert_to_numpy(variable) + state)

    # -- Keras's hooks

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._epoch, self._done = checkpoint_position(self.backup_dir)
        self._note_checkpoint()
        self._saved_at = time.monotonic()
        if os.path.exists(self._states_path()):
            variables = self._other_variables()
            states = self._saved_states("variable", variables)
            for variable, state in zip(variables, states, strict=True):
                variable.assign(state)

    def on_epoch_begin(self, epoch, logs=None):
        # batches of this epoch trained before this fit: those before a
        # checkpoint within it
        self._epoch, self._before = epoch, self._done

    def on_train_batch_end(self, batch, logs=None):
        if self._per_epoch is None:
            return
        self._done = self._before + batch + 1
        console.position["at"] = self._units()
        if batch == 0 and self._before:
            self._add_saved_totals()
        last = batch + 1 == self.params.get("steps")
        if (
            self.every_seconds is None
            or last
            or time.monotonic() - self._saved_at < self.every_seconds
        ):
            return
        # Keras's metadata names the epoch in progress and its batches
        self._current_epoch, self._last_batch_seen = self._epoch, self._done
        self._sync()
        self._save_model()
        self._saved_at = time.monotonic()
        console.position["resumes_at"] = self._units()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)  # saves the checkpoint
        self._saved_at = time.monotonic()
        self._epoch, self._done = epoch + 1, 0
        self._note_checkpoint()

    def on_train_end(self, logs=None):
        console.position.clear()
