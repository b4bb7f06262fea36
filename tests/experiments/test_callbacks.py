"""The train loop's checkpoints on a one-layer model: when a checkpoint is
written within a span (a clock that advances a minute a step stands in for
training time), what it records, and the rows metrics.csv appends."""

import csv

import keras
import numpy as np
import pytest

from experiments.common import callbacks
from experiments.common import console


class _Minutes(keras.callbacks.Callback):
    """A clock for `time.monotonic` that each training step advances by a
    minute (placed before the checkpoints)."""

    now = 0.0

    def __call__(self):
        return self.now

    def on_train_batch_begin(self, batch, logs=None):
        self.now += 60


def _fit(monkeypatch, checkpoints, steps_per_epoch, epochs, *more):
    clock = _Minutes()
    monkeypatch.setattr(callbacks.time, "monotonic", clock)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse", metrics=["mae"])
    x = np.ones((steps_per_epoch * 2, 4), "float32")
    model.fit(
        x,
        x[:, :1],
        batch_size=2,
        epochs=epochs,
        callbacks=[clock, checkpoints, *more],
        verbose=0,
    )


def _checkpoints_written(monkeypatch, backup_dir, every_seconds):
    checkpoints = callbacks.Checkpoints(backup_dir, "dense", 25, every_seconds)
    saved = []
    original = checkpoints._save_model

    def save():
        original()
        saved.append(callbacks.checkpoint_position(backup_dir))

    checkpoints._save_model = save
    _fit(monkeypatch, checkpoints, 25, 1)
    return saved


@pytest.mark.parametrize(
    "every_seconds, expected",
    [
        # 10 minutes at a minute a step: within the span of 25 steps after
        # steps 10 and 20, and at its end
        (600, [(0, 10), (0, 20), (1, 0)]),
        (None, [(1, 0)]),  # spans' ends only
        (3600, [(1, 0)]),  # the span ends first
    ],
)
def test_checkpoints_within_a_span_after_every_seconds(
    tmp_path, monkeypatch, every_seconds, expected
):
    backup_dir = str(tmp_path / "backup")
    saved = _checkpoints_written(monkeypatch, backup_dir, every_seconds)
    assert saved == expected


def test_position_follows_the_steps_and_checkpoints(tmp_path, monkeypatch):
    """What Ctrl-C reports: (step reached, step the last checkpoint resumes
    from), with spans of 4 steps and 90 s between checkpoints."""
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(
                (console.position["at"], console.position["resumes_at"])
            )

    checkpoints = callbacks.Checkpoints(str(tmp_path / "b"), "dense", 4, 90)
    _fit(monkeypatch, checkpoints, 4, 2, Watch())
    # within a span after 2 minutes; at its end (step 4, 8) after the batch
    assert seen == [(1, 0), (2, 2), (3, 2), (4, 2)] + [
        (5, 4),
        (6, 6),
        (7, 6),
        (8, 6),
    ]
    assert console.position == {}  # cleared when training ends


def test_metrics_log_appends_in_the_header_order(tmp_path):
    path = str(tmp_path / "metrics.csv")
    with open(path, "w") as f:
        f.write("epoch,loss,val_loss\n0,1.0,NA\n")
    log = callbacks.MetricsLog(path)
    log.set_model(keras.Sequential([keras.Input((1,))]))
    log.on_train_begin()
    # a resumed run's first epoch is evaluated: Keras's own order would
    # put these keys in another order than the header's
    log.on_epoch_end(1, {"val_loss": 0.5, "loss": 0.7, "extra": 3})
    log.on_train_end()
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert rows[1] == {"epoch": "1", "loss": "0.7", "val_loss": "0.5"}
