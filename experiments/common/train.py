"""The one training loop every experiment binary runs.

`run(config, make_task_data)` trains each model named in the config on the
same data with `model.fit`, evaluates it on every eval split, and writes
`WORKDIR/<task>/<model>/`:

    config.json    the config and the model's resolved arguments
    metrics.csv    one row per checkpoint span (a Keras epoch): train
                   metrics and time; validation metrics where evaluated
    results.json   parameters, train time, steps, eval metrics per split
    model.keras    the trained model
    backup/        the resumable checkpoint while training runs
    tensorboard/   TensorBoard logs
    wandb/         Weights & Biases files (offline unless asked otherwise)

An interrupted model resumes from `backup/` when the same command is run
again. A model whose `results.json` exists is not trained again (unless
`--overwrite`), so the results of one model are never lost to another's run.
Either reuse needs the same settings: a run directory written with other
ones (task options, steps, model arguments; not the list of models or
where logs go) stops the run before anything trains.
With several models, each trains in a fresh process unless
`fresh_process=False` (library callers' default), so one model's compiled
programs never hold memory while the next trains.
When several models ran, a comparison table is printed and saved as
`WORKDIR/<task>/comparison.{md,csv}`.

One model's `fit`, resumed from its checkpoint, and its evaluation are in
`fitting.py`; what `config.json` records and the same-experiment check in
`run_records.py`.
"""

import dataclasses
import datetime
import json
import math
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent import futures

import keras
from absl import app

from experiments.common import console
from experiments.common import results as results_lib
from experiments.common.callbacks import checkpoint_position
from experiments.common.distribute import DistributionError
from experiments.common.distribute import check_batch_size
from experiments.common.distribute import get_strategy
from experiments.common.distribute import is_chief
from experiments.common.distribute import uses_collectives
from experiments.common.fitting import fit_and_evaluate
from experiments.common.run_records import SettingsConflict
from experiments.common.run_records import check_same_experiment
from experiments.common.run_records import run_record
from experiments.common.run_records import train_time
from experiments.common.run_records import write_json
from kerasseq.data.errors import DataFormatError
from kerasseq.data.errors import DataNotFoundError
from kerasseq.models import count_parameters
from kerasseq.models import model_config
from kerasseq.pretrained import CheckpointError
from kerasseq.pretrained import build_from_checkpoint
from kerasseq.pretrained import check_checkpoint

_POLICIES = {
    "none": "float32",
    "bfloat16": "mixed_bfloat16",
    "float16": "mixed_float16",
}


def accuracy_metrics():
    """Fresh metrics of a classifier: the accuracy of integer labels."""
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


@dataclasses.dataclass
class TaskData:
    """What a task family hands to the train loop.

    Attributes:
        head: the task head, a key of `kerasseq.models.HEADS`.
        make_train: function of no arguments that builds the batched
            training dataset of `(inputs, labels, sample_weight)` or
            `(inputs, labels)`; repeated by the loop when `--steps` > 0.
            Each model gets a new one, so that every model sees the
            examples in the same order wherever it comes in the list of
            models (a seeded shuffle reshuffles on each pass over one
            dataset).
        evals: eval split name -> batched dataset. The first is also the
            validation set during training.
        model_args: arguments the data fixes (`vocabulary_size` or
            `feature_dim`, `num_classes`, `max_sequence_length`).
        model_overrides: model name -> arguments the task sets for that
            model only (e.g. an MLP width that keeps its parameters matched
            at the task's size); `--model_args` still overrides them.
        loss: a `keras.losses.Loss`; by default the cross-entropy of
            integer labels and logits, as every classifier here takes it.
        make_metrics: returns fresh metric objects for one model; by
            default accuracy (`accuracy_metrics`).
        primary_metric: the metric the comparison table reports.
        score: optional function `(model, split, run_dir) -> dict` of the
            task's official metrics on eval split `split` (computed from the
            model's predictions, e.g. GLUE's MCC or SQuAD's EM/F1); they
            join that split's `model.evaluate` metrics in `results.json`.
            It may write files (such as predictions) into `run_dir`.
        report: counts of what the data pipeline did (examples per split,
            examples skipped or truncated, and why), saved as `data` in
            `results.json`, so that nothing is dropped without a count.
    """

    head: str
    make_train: Callable
    evals: dict
    model_args: dict
    loss: keras.losses.Loss = None
    make_metrics: Callable = None
    primary_metric: str = "accuracy"
    model_overrides: dict = dataclasses.field(default_factory=dict)
    score: Callable = None
    report: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.loss is None:
            self.loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True
            )
        if self.make_metrics is None:
            self.make_metrics = accuracy_metrics

    def model_args_for(self, name, config):
        """The arguments `build_model` gets for model `name`."""
        return {
            **self.model_args,
            **self.model_overrides.get(name, {}),
            **config.model_args,
        }


# strategies whose devices one process holds for the whole run (a TPU, a
# cluster's collectives): its models train in that process, one by one
_SHARED_STRATEGIES = ("multi_worker", "tpu")


def _worker_dir():
    """Where a multi-worker cluster's non-chief worker writes: a hidden
    directory of the workdir, one per worker."""
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    return f".{task['type']}{task['index']}"


def run(config, make_task_data):
    """Trains and evaluates every model of `config`; returns their results.

    Args:
        config: an `ExperimentConfig`.
        make_task_data: function of the config returning a `TaskData`.

    Returns:
        dict model name -> results dict (as written to `results.json`).
    """
    keras.mixed_precision.set_global_policy(_POLICIES[config.mixed_precision])
    strategy = get_strategy(config.strategy, config.virtual_devices)
    check_batch_size(config.batch_size, strategy)
    if config.strategy == "multi_worker" and not is_chief():
        # a multi-worker cluster's other workers train in step with the
        # chief and keep their files (checkpoints included) to themselves
        config = dataclasses.replace(
            config, workdir=os.path.join(config.workdir, _worker_dir())
        )
    data = make_task_data(config)
    # resolve every model's arguments and check its run directory first: a
    # bad override or a clash with an earlier experiment fails here, before
    # any model trains
    for name in config.models:
        try:
            resolved = resolve_model(config, name, data)
        except ValueError as error:
            if isinstance(error, CheckpointError):
                raise
            raise ModelSettingsError(str(error)) from error
        check_same_experiment(config, name, resolved)
    all_results = {}
    for name in config.models:
        if (
            config.fresh_process
            and len(config.models) > 1
            and config.strategy not in _SHARED_STRATEGIES
        ):
            all_results[name] = _train_in_fresh_process(
                config, name, make_task_data
            )
            continue
        all_results[name] = train_and_evaluate(config, name, data, strategy)
        # free the model's graphs and compiled programs before the next
        # one (a run of every model otherwise holds them all); this also
        # resets Keras's global settings, so the policy is set again
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy(
            _POLICIES[config.mixed_precision]
        )
    table = results_lib.comparison_table(config, all_results, data)
    task_dir = os.path.join(config.workdir, config.task)
    results_lib.write_and_print_table(
        table, os.path.join(task_dir, "comparison")
    )
    console.say(config, f"Saved as {os.path.join(task_dir, 'comparison')}.md")
    return all_results


def _train_one(config, name, make_task_data):
    """What a fresh process runs: the task data and one model's training."""
    keras.mixed_precision.set_global_policy(_POLICIES[config.mixed_precision])
    # before the data: virtual devices are set before TensorFlow starts
    strategy = get_strategy(config.strategy, config.virtual_devices)
    data = make_task_data(config)
    return train_and_evaluate(config, name, data, strategy)


def _train_in_fresh_process(config, name, make_task_data):
    """`train_and_evaluate` in a new Python process ("spawn": nothing of
    this one's TensorFlow state is inherited), which gives all its memory
    back when it ends. Its exceptions are raised here."""
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        job = pool.submit(_train_one, config, name, make_task_data)
        try:
            return job.result()
        except futures.process.BrokenProcessPool as error:
            raise RuntimeError(
                f"The process training {name!r} ended without a result (it "
                "may have run out of memory). Its run directory "
                f"{config.run_dir(name)} keeps the last checkpoint; the same "
                "command resumes from it."
            ) from error


class _CheckedTaskData:
    """`make_task_data` with missing or malformed data and bad settings
    raised as usage errors. A class rather than a closure, so that a fresh
    process can be given it."""

    def __init__(self, make_task_data):
        self.make_task_data = make_task_data

    def __call__(self, config):
        try:
            return self.make_task_data(config)
        except (ValueError, DataNotFoundError, DataFormatError) as error:
            raise app.UsageError(str(error)) from error


def run_program(config, make_task_data):
    """`run`, for a binary's `main`: missing or malformed data, bad settings
    and a clash with an earlier run in the workdir end the program as usage
    errors (the message, no traceback), before anything trains."""
    try:
        return run(config, _CheckedTaskData(make_task_data))
    except (
        SettingsConflict,
        ModelSettingsError,
        CheckpointError,
        DistributionError,
    ) as error:
        raise app.UsageError(str(error)) from error


def run_suite(configs, make_task_data, suite_table, name, title):
    """`run_program` for each task of a suite (GLUE, LRA), in turn; then
    the suite's table, `suite_table(workdir, models)` (one row a model), is
    written as `WORKDIR/<name>.{md,csv}` and printed under `title`."""
    for config in configs:
        run_program(config, make_task_data)
    workdir, models = configs[0].workdir, configs[0].models
    results_lib.write_and_print_table(
        suite_table(workdir, models), os.path.join(workdir, name), title
    )


def learning_rate_for(config, strategy):
    """The peak learning rate: `--learning_rate`, times the number of
    replicas with `--learning_rate_scaling=linear`."""
    if config.learning_rate_scaling == "linear":
        return config.learning_rate * strategy.num_replicas_in_sync
    return config.learning_rate


def _optimizer(config, total_steps, peak):
    learning_rate = peak
    if total_steps:
        warmup = min(config.warmup_steps, total_steps)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else peak,
            decay_steps=max(total_steps - warmup, 1),
            alpha=0.1,
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate,
        weight_decay=config.weight_decay,
        clipnorm=1.0,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def resolve_model(config, name, data):
    """The `ModelConfig` model `name` is built from, as its run records
    it: `model_config`'s, or with `--init_from` the checkpoint's
    config.json and what the task and `--model_args` set beside it
    (checked from config.json, before any weights are read).

    Raises:
        ValueError: an argument the model does not take (a
            `CheckpointError` for one the checkpoint fixes).
    """
    overrides = data.model_args_for(name, config)
    if config.init_from:
        return check_checkpoint(name, config.init_from, data.head, **overrides)
    return model_config(name, data.head, config.preset, **overrides)


class ModelSettingsError(ValueError):
    """The model refuses its arguments (`--model_args`, the preset, the
    task's), or the training data its settings (a batch larger than the
    data); raised before anything is trained."""


def full_batches(evals, batch_size):
    """The eval datasets in whole batches of `batch_size`, and how many
    examples each split leaves out at its end.

    Across several replicas every batch must split evenly (JAX shards it;
    a TPU compiles one shape), so there the last, smaller batch of each
    split is dropped, as for training, and the results say how many
    examples that was.
    """
    whole, dropped = {}, {}
    for split, dataset in evals.items():
        count = sum(
            int(keras.ops.shape(keras.tree.flatten(batch[1])[0])[0])
            for batch in dataset
        )
        whole[split] = dataset.rebatch(batch_size, drop_remainder=True)
        dropped[split] = count % batch_size
    return whole, dropped


def train_and_evaluate(config, name, data, strategy=None):
    """Trains one model, evaluates it and writes its run directory.

    `run` has checked the run directory with `check_same_experiment`.
    """
    run_dir = config.run_dir(name)
    overrides = data.model_args_for(name, config)
    resolved = resolve_model(config, name, data)
    results_path = os.path.join(run_dir, "results.json")
    if os.path.exists(results_path) and not config.overwrite:
        console.say(config, f"{name}: results exist in {run_dir}, reused.")
        with open(results_path) as f:
            return json.load(f)
    strategy = strategy or get_strategy(config.strategy, config.virtual_devices)
    keras.utils.set_random_seed(config.seed)
    # a value the model refuses (a --model_args mistake) fails here
    with strategy.scope():
        try:
            if config.init_from:
                model = build_from_checkpoint(
                    name, config.init_from, data.head, **overrides
                )
            else:
                model = resolved.build()
        except (TypeError, ValueError) as error:
            if isinstance(error, CheckpointError):
                raise
            raise ModelSettingsError(
                f"Cannot build {name!r} with these arguments: {error}"
            ) from error
    # Keras's epochs are the spans between checkpoints (`checkpoint_steps`);
    # a resumed run goes on from its last checkpoint (an epoch's end, or
    # within an epoch after --checkpoint_minutes) and skips the batches
    # trained before it, so that it sees the data an uninterrupted run saw
    resumed_epoch, within = checkpoint_position(os.path.join(run_dir, "backup"))
    validation_freq = 1
    if config.steps:
        steps_per_epoch = min(config.checkpoint_steps(), config.steps)
        validation_freq = max(1, config.eval_steps() // steps_per_epoch)
        epochs = math.ceil(config.steps / steps_per_epoch)
        train = _make_train(data).repeat()
        total_steps = steps_per_epoch * epochs
        resumed_at = resumed_epoch * steps_per_epoch + within
        console.say(
            config,
            f"{name}: training {total_steps} steps in {run_dir}"
            + (f", resuming at step {resumed_at}" if resumed_at else ""),
        )
    else:
        steps_per_epoch, epochs = None, config.epochs
        train = _make_train(data)
        total_steps = None
        console.say(
            config,
            f"{name}: training {epochs} epochs in {run_dir}"
            + (f", resuming at epoch {resumed_epoch}" if resumed_epoch else ""),
        )

    # written once the model and its data are made: a setting either refuses
    # leaves no run directory behind
    os.makedirs(run_dir, exist_ok=True)
    write_json(
        os.path.join(run_dir, "config.json"),
        run_record(config, name, resolved),
    )

    # XLA compiles the whole train step, except across replicas that
    # TensorFlow's collectives join (Keras's own choice under tf.distribute)
    jit_compile = not uses_collectives(strategy)
    learning_rate = learning_rate_for(config, strategy)
    eval_datasets, dropped = data.evals, None
    if strategy.num_replicas_in_sync > 1:
        eval_datasets, dropped = full_batches(data.evals, config.batch_size)
    # on JAX the distribution lays out the variables as they are made and
    # the batches as fit and evaluate read them, so all of it is in scope
    with strategy.scope():
        model.compile(
            optimizer=_optimizer(config, total_steps, learning_rate),
            loss=data.loss,
            weighted_metrics=data.make_metrics(),
            jit_compile=jit_compile,
        )
        parameters = count_parameters(model)
        history, evals = fit_and_evaluate(
            config,
            name,
            data,
            eval_datasets,
            model,
            run_dir,
            steps_per_epoch,
            epochs,
            train,
            validation_freq,
        )
    model.save(os.path.join(run_dir, "model.keras"))
    last = {k: v[-1] for k, v in history.items() if v}
    results = {
        "model": name,
        "task": config.task,
        "family": config.family,
        "preset": config.preset,
        "parameters": parameters,
        "replicas": strategy.num_replicas_in_sync,
        "jit_compile": jit_compile,
        "learning_rate": learning_rate,
        "train_steps": total_steps,
        "train_time_s": train_time(os.path.join(run_dir, "metrics.csv")),
        "data": data.report,
        "final_train": {k: float(v) for k, v in last.items()},
        # numbers as floats; a text (a score's convention) as it is
        "eval": {
            s: {k: v if isinstance(v, str) else float(v) for k, v in m.items()}
            for s, m in evals.items()
        },
        **({"eval_examples_dropped": dropped} if dropped else {}),
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
        "provenance": results_lib.provenance(),
    }
    write_json(results_path, results)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    console.say(
        config,
        f"{name}: trained in {results['train_time_s']:.0f} s; results, "
        f"model.keras and metrics.csv in {run_dir}",
    )
    return results


def _make_train(data):
    try:
        return data.make_train()
    except ValueError as error:
        raise ModelSettingsError(
            f"The training data cannot be made: {error}"
        ) from error
