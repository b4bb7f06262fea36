"""Callbacks of the shared train loop."""

import time

import keras


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
