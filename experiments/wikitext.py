r"""Causal language modelling on WikiText-2 (raw), scored by perplexity.

Trains every model of `--model` (causal models) on the training split cut
into rows of `--seq_len` tokens, then scores the validation and test splits
with sliding windows of `--seq_len` tokens advancing by `--eval_stride`
(every token scored once, with context; see `kerasseq.data.wikitext`), and
reports perplexity per token and per word. Results go to
`WORKDIR/wikitext2/<model>/` and the comparison table.

    python -m experiments.wikitext --model=gpt,mamba \
        --data_dir=/path/to/wikitext-2-raw --tokenizer=gpt2 \
        --tokenizer_dir=/path/to/gpt2 --seq_len=256 --sample

`--data_dir` holds `wiki.{train,valid,test}.raw` or the official archive
`wikitext-2-raw-v1.zip`; without it the official archive is downloaded once
(4.5 MiB, SHA-256 checked) into kerasseq's cache (`KERASSEQ_CACHE`, default
`~/.cache/kerasseq`) and read there. `--sample` prints (and saves as
`samples.txt`) a continuation of `--sample_prompt` by each trained model,
through `CausalLM.generate`.
"""

import dataclasses
import functools
import os

from absl import flags

from experiments.common import config as config_lib
from experiments.common import console
from experiments.common import options
from experiments.common.flags import define_shared_flags
from experiments.common.lazy import lazy_import
from experiments.common.options import setting

keras = lazy_import("keras")
metrics = lazy_import("experiments.common.metrics")
train = lazy_import("experiments.common.train")
batching = lazy_import("kerasseq.data.batching")
wikitext = lazy_import("kerasseq.data.wikitext")
models_lib = lazy_import("kerasseq.models")

TASKS = ("wikitext2",)
EVAL_SPLITS = ("validation", "test")


@dataclasses.dataclass
class WikitextOptions(options.TokenizerOptions):
    """The WikiText binary's options."""

    seq_len: int = setting(
        256,
        "Tokens per training row and per evaluation window.",
        minimum=2,
    )
    eval_stride: int | None = setting(
        None,
        "Tokens an evaluation window advances (default seq_len / 2).",
        minimum=1,
    )
    eval_batch_size: int = setting(
        8, "Windows per forward pass when scoring.", minimum=1
    )
    num_train_tokens: int | None = setting(
        None, "Train on the first N tokens only.", minimum=2
    )
    num_eval_tokens: int | None = setting(
        None, "Score the first N tokens of each split.", minimum=1
    )

    def __post_init__(self):
        super().__post_init__()
        if self.eval_stride is None:
            self.eval_stride = max(self.seq_len // 2, 1)
        if self.eval_stride > self.seq_len:
            raise ValueError(
                f"--eval_stride={self.eval_stride} exceeds --seq_len="
                f"{self.seq_len}: tokens between windows would never be "
                "scored."
            )

    def limit(self, split):
        """The tokens of `split` to use (`None`: all)."""
        if split == "train":
            return self.num_train_tokens
        return self.num_eval_tokens


@dataclasses.dataclass
class SampleOptions:
    """What `--sample` generates after training (not part of the run's
    settings: it changes no result)."""

    sample: bool = setting(
        False, "Print a continuation of --sample_prompt per model."
    )
    sample_prompt: str = setting(
        " = Robert Boulter = \n", "Prompt for --sample."
    )
    sample_tokens: int = setting(64, "Tokens --sample generates.", minimum=1)
    sample_temperature: float = setting(
        0.0, "0 decodes greedily; above 0 samples.", minimum=0
    )

    def __post_init__(self):
        options.check_settings(self)


def define_flags():
    """Defines this binary's flags (only when it runs as the program, so
    that tests can import it beside the other binaries)."""
    define_shared_flags(TASKS, default_task="wikitext2", default_model="gpt")
    options.define_flags(WikitextOptions)
    options.define_flags(SampleOptions)


FLAGS = flags.FLAGS


def check_causal(models):
    """Raises `ValueError` for a model that cannot be a causal LM."""
    bidirectional = [
        name for name in models if not models_lib.MODELS[name].causal
    ]
    if bidirectional:
        causal = ", ".join(
            n for n, spec in models_lib.MODELS.items() if spec.causal
        )
        raise ValueError(
            f"Model(s) {', '.join(bidirectional)} are bidirectional and "
            f"cannot be causal LMs. Causal models: {causal}."
        )


def make_task_data(config):
    """Reads and tokenizes the splits; builds the training rows, the
    evaluation rows (the loss `model.evaluate` reports) and the sliding
    windows the perplexity is scored on."""
    args = config.task_args
    tokenizer = args.make_tokenizer()
    seq_len = args.seq_len
    streams, words = {}, {}
    for split in ("train",) + EVAL_SPLITS:
        text = wikitext.read_split(config.data_dir, split, config.download)
        stream = wikitext.tokenize_stream(tokenizer, text)
        limit = args.limit(split)
        if limit and limit < len(stream):
            # the words of the scored tokens' text
            stream = stream[:limit]
            text = tokenizer.decode(stream)
        if not len(stream):
            raise ValueError(f"The WikiText {split} split has no tokens.")
        streams[split] = stream
        words[split] = metrics.word_count(text)

    inputs, labels = wikitext.training_rows(streams["train"], seq_len)
    if len(labels) < config.batch_size:
        raise ValueError(
            f"{len(labels)} training rows of {seq_len} tokens are fewer than "
            f"one batch (--batch_size={config.batch_size})."
        )
    make_train = functools.partial(
        batching.array_dataset,
        inputs,
        labels,
        config.batch_size,
        config.seed,
        shuffle=True,
        drop_remainder=True,
    )
    evals, windows = {}, {}
    for split in EVAL_SPLITS:
        stream = streams[split]
        rows = min(seq_len, len(stream) - 1)
        if rows >= 1:
            inputs, labels = wikitext.training_rows(stream, rows)
            evals[split] = batching.array_dataset(
                inputs, labels, config.batch_size, config.seed
            )
        windows[split] = wikitext.sliding_windows(
            stream, seq_len, args.eval_stride, tokenizer.end_id
        )

    def score(model, split, run_dir=None):
        nll, tokens = wikitext.score_windows(
            model, windows[split], args.eval_batch_size
        )
        return {
            "perplexity": metrics.perplexity(nll, tokens),
            "word_perplexity": metrics.perplexity(nll, words[split]),
            "nll": nll,
            "tokens": tokens,
            "words": words[split],
            "perplexity_convention": (
                f"the {split} split's raw text as one token stream "
                f"({args.tokenizer} tokenizer) after one end-of-text token, "
                f"scored in windows of {seq_len} tokens advancing by "
                f"{args.eval_stride}: every token scored once, the first "
                "window's all, each later one's last stride tokens with the "
                "tokens before them in its window as context; perplexity "
                "per token, and per whitespace-separated word of the raw "
                "text (word_perplexity). Not lm-eval's convention (documents "
                "scored apart, detokenized, disjoint windows): "
                "python -m experiments.evaluate --task=wikitext gives that."
            ),
        }

    return train.TaskData(
        head="causal_lm",
        make_train=make_train,
        evals=evals,
        model_args={
            "vocabulary_size": tokenizer.vocabulary_size,
            "max_sequence_length": seq_len,
        },
        primary_metric="perplexity",
        score=score,
    )


def sample(config, prompt, max_new_tokens, temperature=0.0):
    """Continues `prompt` with each trained model of `config`; writes
    `samples.txt` in each run directory.

    Returns:
        dict model name -> generated text (the continuation only).
    """
    args = config.task_args
    tokenizer = args.make_tokenizer()
    prompt_ids = tokenizer.encode(prompt) or [tokenizer.end_id]
    # what fits in the position table, keeping the prompt's end
    room = args.seq_len - max_new_tokens
    if room < 1:
        raise ValueError(
            f"--sample_tokens={max_new_tokens} leaves no room for a prompt "
            f"in --seq_len={args.seq_len} positions."
        )
    prompt_ids = prompt_ids[-room:]
    samples = {}
    for name in config.models:
        run_dir = config.run_dir(name)
        model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
        ids = model.generate(
            [prompt_ids], max_new_tokens, temperature, seed=config.seed
        )
        text = tokenizer.decode(ids[0, len(prompt_ids) :])
        with open(os.path.join(run_dir, "samples.txt"), "w") as f:
            f.write(prompt + text + "\n")
        samples[name] = text
    return samples


def main(argv):
    del argv
    with console.usage_errors():
        task_args = options.from_flags(WikitextOptions, FLAGS)
        config = config_lib.from_flags(FLAGS, "wikitext", task_args)
        check_causal(config.models)
        sampling = options.from_flags(SampleOptions, FLAGS)
    results = train.run_program(config, make_task_data)
    for name, result in results.items():
        test = result["eval"].get("test", {})
        if "perplexity" in test:
            print(
                f"{name}: test perplexity {test['perplexity']:.2f} per token,"
                f" {test['word_perplexity']:.2f} per word"
            )
    if sampling.sample:
        with console.usage_errors():
            samples = sample(
                config,
                sampling.sample_prompt,
                sampling.sample_tokens,
                sampling.sample_temperature,
            )
        for name, text in samples.items():
            print(f"--- {name} ---\n{sampling.sample_prompt}{text}")


if __name__ == "__main__":
    define_flags()
    console.run(main)
