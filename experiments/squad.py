r"""SQuAD 1.1 and 2.0: extractive question answering, scored by EM and F1.

Trains every model of `--model` to point at the answer span in windows of
`[first] question [end] context [end]` (contexts longer than `--max_length`
are cut into windows `--doc_stride` tokens apart), then turns the
validation windows' start and end logits back into answer text (n-best
spans, at most `--max_answer_length` tokens; for 2.0 "no answer" when the
null score beats the best span by `--null_threshold`) and scores them by
the exact-match and F1 rules of that version's official script. Results go
to `WORKDIR/squad<version>/<model>/`, with the predictions as
`predictions.json` (id -> text, the official scripts' input).

    python -m experiments.squad --version=1.1 --model=transformer,mamba \
        --data_dir=/path/to/squad --tokenizer=gpt2 \
        --tokenizer_dir=/path/to/gpt2

`--data_dir` holds the official files (`train-v1.1.json`, `dev-v1.1.json`,
or the v2.0 ones); without it TensorFlow Datasets' `squad/v1.1` or
`squad/v2.0` is used, downloaded and prepared the first time
(`--download=never` reads a prepared copy only). Examples whose answer is
not in their context are skipped and counted in `results.json` (`data`).
"""

import dataclasses
import json
import os

from absl import flags

from experiments.common import config as config_lib
from experiments.common import console
from experiments.common import options
from experiments.common.flags import define_shared_flags
from experiments.common.lazy import lazy_import
from experiments.common.options import catalogue
from experiments.common.options import setting

keras = lazy_import("keras")
train = lazy_import("experiments.common.train")
squad_metrics = lazy_import("experiments.common.squad_metrics")
squad = lazy_import("kerasseq.data.squad")
batching = lazy_import("kerasseq.data.batching")

TASKS = ("squad",)


@dataclasses.dataclass
class SquadOptions(options.TokenizerOptions, options.ExampleLimits):
    """The SQuAD binary's options."""

    version: str = setting(
        "1.1", "SQuAD version.", choices=catalogue.SQUAD_VERSIONS
    )
    max_length: int = setting(384, "Tokens per window.", minimum=8)
    doc_stride: int = setting(
        128, "Tokens between the starts of context windows.", minimum=1
    )
    max_query_length: int = setting(
        64, "Questions are cut to this many tokens.", minimum=1
    )
    max_answer_length: int = setting(
        30, "The most tokens a predicted answer has.", minimum=1
    )
    n_best: int = setting(
        20, "Start and end positions considered per window.", minimum=1
    )
    null_threshold: float = setting(
        0.0,
        "2.0: predict no answer when the null score beats the best "
        "span's by more than this.",
    )

    def __post_init__(self):
        super().__post_init__()
        chunk = self.max_length - self.max_query_length - 3
        if not self.doc_stride < chunk:
            raise ValueError(
                f"--doc_stride={self.doc_stride} must be below the shortest "
                f"context window, --max_length - --max_query_length - 3 = "
                f"{chunk}, so that windows overlap and every answer lies "
                "wholly in one."
            )


def define_flags():
    """Defines this binary's flags (only when it runs as the program, so
    that tests can import it beside the other binaries)."""
    define_shared_flags(TASKS, default_task="squad", default_model="gpt")
    options.define_flags(SquadOptions)


FLAGS = flags.FLAGS


def task_name(version):
    """The run directory's task name, e.g. `squad1.1`."""
    return f"squad{version}"


def make_task_data(config):
    """Reads the questions, cuts them into windows, and scores the
    validation windows' predictions with the official EM and F1."""
    args = config.task_args
    tokenizer = args.make_tokenizer()
    examples, windows, report = {}, {}, {}
    for split in squad.SPLITS:
        split_examples, counts = squad.load_squad(
            args.version, split, config.data_dir, config.download
        )
        limit = args.limit(split)
        if limit:
            split_examples = split_examples[:limit]
        if not split_examples:
            raise ValueError(f"The SQuAD {split} split has no questions.")
        split_windows = squad.make_windows(
            split_examples,
            tokenizer,
            args.max_length,
            args.doc_stride,
            args.max_query_length,
        )
        examples[split], windows[split] = split_examples, split_windows
        report[split] = {
            **counts,
            "used_examples": len(split_examples),
            "windows": len(split_windows),
            "truncated_questions": split_windows.truncated_questions,
            "answers_in_no_window": split_windows.answers_in_no_window,
        }
    if len(windows["train"]) < config.batch_size:
        raise ValueError(
            f"{len(windows['train'])} training windows are fewer than one "
            f"batch (--batch_size={config.batch_size})."
        )

    def dataset(split, training=False):
        return batching.array_dataset(
            windows[split].inputs,
            windows[split].labels,
            config.batch_size,
            config.seed,
            shuffle=training,
            drop_remainder=training,
        )

    evals = {"validation": dataset("validation")}

    def score(model, split, run_dir=None):
        logits = model.predict(evals[split], verbose=0)
        predictions = squad.postprocess(
            examples[split],
            windows[split],
            logits[:, 0],
            logits[:, 1],
            n_best=args.n_best,
            max_answer_length=args.max_answer_length,
            version_2=args.version == "2.0",
            null_threshold=args.null_threshold,
        )
        if run_dir:
            path = os.path.join(run_dir, f"predictions_{split}.json")
            with open(path, "w") as f:
                json.dump(predictions, f, indent=1, ensure_ascii=False)
        answers = {e.id: e.answers for e in examples[split]}
        return squad_metrics.squad_scores(predictions, answers, args.version)

    return train.TaskData(
        head="span_extraction",
        make_train=lambda: dataset("train", training=True),
        evals=evals,
        model_args={
            "vocabulary_size": tokenizer.vocabulary_size,
            "max_sequence_length": args.max_length,
        },
        # the share of start and end positions found
        make_metrics=lambda: [
            keras.metrics.SparseCategoricalAccuracy(name="position_accuracy")
        ],
        primary_metric="f1",
        score=score,
        report=report,
    )


def main(argv):
    del argv
    with console.usage_errors():
        task_args = options.from_flags(SquadOptions, FLAGS)
        config = config_lib.from_flags(FLAGS, "squad", task_args)
        config = dataclasses.replace(config, task=task_name(FLAGS.version))
    results = train.run_program(config, make_task_data)
    for name, result in results.items():
        scores = result["eval"].get("validation", {})
        if "f1" in scores:
            print(
                f"{name}: exact match {scores['exact_match']:.2f}, "
                f"F1 {scores['f1']:.2f} ({int(scores['count'])} questions)"
            )


if __name__ == "__main__":
    define_flags()
    console.run(main)
