r"""Zero- and few-shot evaluation of pretrained causal language models,
scored as EleutherAI's lm-evaluation-harness (0.4.13) scores them.

No training step is taken. Each model of `--init_from` (a Hugging Face
checkpoint directory or hub id, whose config.json names the architecture,
or a finished kerasseq run: its directory or its `model.keras`) is
evaluated on each task of `--task` at each `--num_fewshot`:

    python -m experiments.evaluate --task=sst2,rte,wikitext,squadv2 \
        --num_fewshot=0,5 --init_from=/ckpt/gpt2,runs/wikitext2/gpt \
        --data_dir=/data

Tasks, with lm-eval's prompts, choices and metrics (see
`experiments/common/zero_shot_tasks.py`): GLUE's cola, sst2, mrpc, qqp, mnli,
mnli_mismatch, qnli, rte, wnli (multiple choice by summed
log-likelihood); wikitext (WikiText-2's test articles, rolling
log-likelihood: word and byte perplexity, bits per byte); squadv2 (greedy
generation to the first newline; SQuAD 2.0's exact match and F1, and the
best ones over thresholds of the probability of " unanswerable"); squad
(SQuAD 1.1, which lm-eval lacks: squadv2's prompt and generation, the
official 1.1 exact match and F1). `--data_dir` holds the same files as
the tasks' own binaries read (GLUE's release folders, `wikitext-2-raw/`,
SQuAD's JSON); without it the data is downloaded as they do.

Writes `WORKDIR/evaluate/<model>/results.json` (metrics per task and
shot count, each with its `<metric>_stderr` as lm-eval reports it: the
standard error of the mean for acc, a bootstrap for f1 and mcc, "N/A" for
the perplexities and SQuAD), `WORKDIR/evaluate/<model>/<k>shot/
samples_<task>.jsonl` (one record per document: the document, the exact
context, the choices and their log-likelihoods, the prediction) and the
comparison table `WORKDIR/evaluate/comparison.{md,csv}` (a row per model,
task, shot count and metric: its value and `±` standard error).
"""

import dataclasses

from absl import app
from absl import flags

from experiments.common import console
from experiments.common import lm_scorer
from experiments.common import options
from experiments.common import standard_errors
from experiments.common import zero_shot_tasks
from experiments.common.lazy import lazy_import
from experiments.common.options import setting

evaluation = lazy_import("experiments.common.evaluation")

_TASKS = zero_shot_tasks.TASKS


def _names(text):
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _counts(text):
    try:
        return tuple(int(n) for n in _names(text))
    except ValueError as error:
        raise ValueError(
            f"--num_fewshot takes comma-separated integers, got {text!r}."
        ) from error


@dataclasses.dataclass
class EvaluateOptions:
    """What `experiments.evaluate` evaluates, on what, and where it
    writes."""

    init_from: tuple = setting(
        (),
        "Comma-separated models: Hugging Face checkpoint directories or hub "
        "ids (the architecture comes from config.json), or kerasseq runs "
        "(a run directory or its model.keras).",
        parse=_names,
        flag_default="",
    )
    task: tuple = setting(
        ("sst2",),
        f"Comma-separated tasks: {', '.join(_TASKS)}.",
        parse=_names,
        flag_default="sst2",
    )
    num_fewshot: tuple = setting(
        (0,),
        "Comma-separated numbers of few-shot examples (0: zero-shot).",
        parse=_counts,
        flag_default="0",
    )
    tokenizer_dir: str | None = setting(
        None,
        "Directory with a byte-level BPE tokenizer: GPT-2's vocab.json + "
        "merges.txt (or encoder.json + vocab.bpe), or else a Hugging Face "
        "tokenizer.json (GPT-NeoX's: Pythia, Mamba). Default: the "
        "checkpoint's own directory, or for a kerasseq run the tokenizer its "
        "config.json records.",
        path=True,
    )
    data_dir: str | None = setting(
        None,
        "Local data: GLUE's release folders, wikitext-2-raw/, SQuAD's "
        "train-v2.0.json and dev-v2.0.json (squadv2) or train-v1.1.json and "
        "dev-v1.1.json (squad); only they are read.",
        path=True,
    )
    download: str = setting(
        "auto",
        "auto: download data that --data_dir does not give; never: only "
        "read local copies.",
        choices=("auto", "never"),
    )
    limit: int | None = setting(
        None, "Evaluate the first N documents of each task.", minimum=1
    )
    batch_size: int = setting(8, "Requests scored per forward pass.", minimum=1)
    max_length: int | None = setting(
        None,
        "Tokens the model reads at once (default: its position table's "
        "length, or 2048 as lm-eval gives models without one).",
        minimum=2,
    )
    bootstrap_iters: int = setting(
        standard_errors.DEFAULT_BOOTSTRAP_ITERS,
        "Bootstrap resamples for the standard errors of f1 and mcc, drawn "
        "as lm-eval draws them (its default); 0: no standard errors.",
        minimum=0,
    )
    max_gen_toks: int = setting(
        lm_scorer.DEFAULT_MAX_GEN_TOKENS,
        "Tokens a generation may add (lm-eval's default).",
        minimum=1,
    )
    workdir: str = setting("runs", "Where results are written.", path=True)
    verbose: int = setting(
        2,
        "0: the results only; 1-2: what is evaluated where; 3: also "
        "TensorFlow's and the libraries' own logs.",
        minimum=0,
        maximum=3,
    )

    def __post_init__(self):
        options.check_settings(self)
        if not self.init_from:
            raise ValueError(
                "--init_from names no model: give one or more checkpoint "
                "directories, hub ids or kerasseq runs."
            )
        unknown = [t for t in self.task if t not in _TASKS]
        if unknown or not self.task:
            raise ValueError(
                f"Unknown --task {', '.join(unknown) or '(none)'}; valid: "
                f"{', '.join(_TASKS)}."
            )
        negative = [k for k in self.num_fewshot if k < 0]
        if negative or not self.num_fewshot:
            raise ValueError(
                "--num_fewshot takes numbers >= 0, got "
                f"{list(self.num_fewshot)}."
            )


FLAGS = flags.FLAGS


def main(argv):
    del argv
    try:
        settings = options.from_flags(EvaluateOptions, FLAGS)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    try:
        evaluation.run(settings)
    except evaluation.UsageError as error:
        raise app.UsageError(str(error)) from error


if __name__ == "__main__":
    options.define_flags(EvaluateOptions)
    console.run(main)
