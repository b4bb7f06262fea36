"""Zero- and few-shot evaluation of causal language models, scored as
EleutherAI's lm-evaluation-harness (0.4.13) scores them.

Nothing is trained: a pretrained model reads prompts built from a task's
documents and is scored on what it predicts. The prompts, choices,
few-shot sampling, tokenization and metrics follow lm-eval's own task
definitions (`lm_eval/tasks/glue/*/default.yaml`, `wikitext/wikitext.yaml`,
`squadv2/task.py`), so that the numbers compare with tables made with it;
tests compare with goldens lm-eval wrote (`tests/fixtures/lm_eval/`).

Three kinds of task:

- multiple choice (GLUE): the context is the prompt, each choice a
  continuation `" " + choice`; the prediction is the choice of highest
  summed log-likelihood (`acc`, and lm-eval's `f1` / `mcc` where it has
  them).
- rolling log-likelihood (WikiText-2): each document (a Wikipedia article,
  detokenized) is scored whole, in windows of the model's length; word
  perplexity, byte perplexity and bits per byte.
- generation (SQuAD 2.0, and SQuAD 1.1, which lm-eval lacks, with the
  same prompt): greedy continuation of the prompt up to the first newline,
  scored with the official exact match and F1 of the version.

lm-eval's conventions, kept here:

- Few-shot examples come from the training split, drawn for each evaluated
  document in order by one `random.Random(1234)` (`k + 1` drawn, the
  document itself dropped, the first `k` kept); each is its prompt, `" "`
  and its answer, followed by `"\\n\\n"`.
- A (context, continuation) pair: trailing whitespace of the context moves
  to the continuation; the pair is encoded whole and split where the
  context's own encoding ends; the model reads at most `max_length` tokens,
  keeping their end.
"""

import dataclasses
import math
import random
import re
from collections.abc import Callable

import numpy as np

from experiments.common import metrics as metrics_lib
from experiments.common import squad_metrics

FEWSHOT_SEED = 1234
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
# the context length lm-eval gives a model whose config names none
DEFAULT_MAX_LENGTH = 2048
# tokens a generation may add (lm-eval's default `max_gen_toks`)
DEFAULT_MAX_GEN_TOKENS = 256


# === Tokenization conventions ===


def encode_pair(tokenizer, context, continuation, prefix_id):
    """The token ids of a (context, continuation) pair, as lm-eval forms
    them.

    Trailing whitespace of `context` moves to `continuation`; the pair is
    encoded whole and split where the context's own encoding ends (so a
    merge across the boundary counts to the continuation). An empty
    context becomes `[prefix_id]` (the end-of-text token).

    Returns:
        `(context_ids, continuation_ids)`, lists of ints.
    """
    if not context:
        continuation_ids = tokenizer.encode(continuation)
        if continuation_ids and continuation_ids[0] == prefix_id:
            return continuation_ids[:1], continuation_ids[1:]
        return [prefix_id], continuation_ids
    stripped = context.rstrip()
    spaces = context[len(stripped) :]
    whole = tokenizer.encode(stripped + spaces + continuation)
    context_ids = tokenizer.encode(stripped)
    return context_ids, whole[len(context_ids) :]


def rolling_windows(token_ids, prefix_id, max_length):
    """Windows that score every token of a document once (lm-eval's
    `loglikelihood_rolling` with a context of 1).

    The first window reads `[prefix_id] + tokens[:L-1]` and scores
    `tokens[:L]` (`L = max_length`); each next one scores the next `L`
    tokens (fewer at the end) and reads the `L` tokens before each of
    them, so the last, short window still reads a full window.

    Returns:
        A list of `(context_ids, continuation_ids)` pairs, disjoint.
    """
    tokens = list(token_ids)
    if not tokens:
        return []
    first = min(max_length, len(tokens))
    pairs = [([prefix_id], tokens[:first])]
    done = first
    while done < len(tokens):
        count = min(len(tokens) - done, max_length)
        end = done + count
        window = tokens[max(end - max_length - 1, 0) : end - 1]
        # the part before the scored tokens is their context
        pairs.append((window[: len(window) - (count - 1)], tokens[done:end]))
        done = end
    return pairs


# === Scoring with a model ===


def _bucket(length, limit):
    """The padded length of a batch, at most `limit`: the next multiple of
    16, or past 128 of an eighth of the next power of two (at most a
    quarter more than `length`), so that a few compiled programs (one per
    bucket) serve every length, with little padding. Powers of two padded
    0-shot SST-2's batches to 1.42 times their longest request's length,
    these to 1.18 times (lm-eval pads to the longest)."""
    step = max(16, 1 << max((length - 1).bit_length() - 3, 0))
    return min(-(-length // step) * step, limit)


class Scorer:
    """Log-likelihoods of continuations under a `kerasseq.models.CausalLM`.

    Requests are read in batches through the model's parallel form (the
    same call as training), right-padded to a bucket length: a causal
    model's predictions at real tokens do not depend on padding after them.

    Args:
        model: a `CausalLM`.
        max_length: the most tokens the model reads at once.
        batch_size: requests per forward pass.
    """

    def __init__(self, model, max_length, batch_size=8):
        from kerasseq.ops.dispatch import compile_function

        self.model = model
        self.max_length = max_length
        self.batch_size = batch_size

        def token_scores(token_ids, padding_mask, targets):
            import keras

            logits = model(
                {"token_ids": token_ids, "padding_mask": padding_mask},
                training=False,
            )
            logits = keras.ops.cast(logits, "float32")
            log_probs = keras.ops.log_softmax(logits, axis=-1)
            picked = keras.ops.take_along_axis(
                log_probs, targets[..., None], axis=-1
            )[..., 0]
            greedy = keras.ops.argmax(logits, axis=-1) == targets
            return picked, greedy

        # one program per (batch, length) shape, each with a static length
        # (the scan kernels need it)
        self._scores = compile_function(token_scores, relax_shapes=False)

    def loglikelihoods(self, requests):
        """`(log-likelihood, is_greedy)` of each `(context_ids,
        continuation_ids)` request, in order."""
        # what the model reads: the pair's last max_length + 1 tokens but
        # the last, with each position's next token as target
        rows = []
        for context_ids, continuation_ids in requests:
            if not continuation_ids:
                raise ValueError("A continuation encodes to no tokens.")
            whole = (list(context_ids) + list(continuation_ids))[
                -(self.max_length + 1) :
            ]
            rows.append((whole[:-1], whole[1:], len(continuation_ids)))
        results = [None] * len(rows)
        # longest first, as lm-eval orders them: batches of like lengths
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        for begin in range(0, len(order), self.batch_size):
            chosen = order[begin : begin + self.batch_size]
            length = _bucket(len(rows[chosen[0]][0]), self.max_length)
            inputs = np.zeros((self.batch_size, length), np.int32)
            targets = np.zeros((self.batch_size, length), np.int32)
            mask = np.zeros((self.batch_size, length), bool)
            for row, index in enumerate(chosen):
                tokens, labels, _ = rows[index]
                inputs[row, : len(tokens)] = tokens
                targets[row, : len(labels)] = labels
                mask[row, : len(tokens)] = True
            picked, greedy = self._scores(inputs, mask, targets)
            picked = np.asarray(picked)
            greedy = np.asarray(greedy)
            for row, index in enumerate(chosen):
                tokens, _, count = rows[index]
                span = slice(len(tokens) - count, len(tokens))
                results[index] = (
                    float(np.sum(picked[row, span], dtype=np.float64)),
                    bool(np.all(greedy[row, span])),
                )
        return results

    def generate_until(self, tokenizer, context, until, max_tokens, end_id):
        """The greedy continuation of `context`, cut before the first of
        the strings `until` (or the end-of-text token), as lm-eval's
        `generate_until`: the context keeps its last `max_length -
        max_tokens` tokens."""
        context_ids = tokenizer.encode(context) or [end_id]
        context_ids = context_ids[-(self.max_length - max_tokens) :]
        generated = []
        text = ""
        # a few tokens at a time, stopping once a stop string appeared
        while len(generated) < max_tokens:
            count = min(16, max_tokens - len(generated))
            output = self.model.generate(
                np.asarray([context_ids + generated], np.int32), count
            )
            new = [
                int(t) for t in output[0, len(context_ids) + len(generated) :]
            ]
            generated += new
            if end_id in generated:
                generated = generated[: generated.index(end_id)]
                text = tokenizer.decode(generated)
                break
            text = tokenizer.decode(generated)
            if any(stop in text for stop in until):
                break
        for stop in until:
            text = text.split(stop)[0]
        return text


# === Standard errors ===

# lm-eval's default number of bootstrap resamples (`simple_evaluate`'s
# `bootstrap_iters`)
DEFAULT_BOOTSTRAP_ITERS = 100000
# what lm-eval reports as the standard error of a metric it has none for
NOT_AVAILABLE = "N/A"
# lm-eval draws bootstrap resamples in chunks of at most this many, chunk
# `i` from `random.Random(i)`
_BOOTSTRAP_CHUNK = 1000
# resampled values held at once (memory, not results)
_BOOTSTRAP_BATCH = 4_000_000


def sample_stddev(values):
    """The standard deviation with Bessel's correction, summed in order as
    lm-eval's `sample_stddev` sums it."""
    mu = sum(values) / len(values)
    return math.sqrt(sum([(x - mu) ** 2 for x in values]) / (len(values) - 1))


def mean_stderr(values):
    """lm-eval's standard error of a mean (`acc`): `sample_stddev /
    sqrt(n)`."""
    return sample_stddev(values) / math.sqrt(len(values))


def _python_random_state(seed):
    """A NumPy `RandomState` in the state of `random.Random(seed)`: both
    are MT19937 and make a double of two 32-bit draws alike, so
    `random_sample` continues exactly Python's `random()`."""
    state = random.Random(seed).getstate()[1]
    generator = np.random.RandomState()
    generator.set_state(
        ("MT19937", np.asarray(state[:-1], np.uint32), state[-1])
    )
    return generator


def _f1_of_rows(golds, predictions):
    """Binary F1 of class 1 of each row, 0.0 where it has no positive (as
    scikit-learn's `f1_score`, lm-eval's `f1`)."""
    is_gold, is_pred = golds == 1, predictions == 1
    tp = np.sum(is_gold & is_pred, axis=1)
    denominator = 2 * tp + np.sum(is_gold ^ is_pred, axis=1)
    safe = np.maximum(denominator, 1).astype(np.float64)
    return np.where(denominator > 0, 2 * tp / safe, 0.0)


def _mcc_of_rows(golds, predictions, classes):
    """Matthews correlation of each row, by scikit-learn's
    `matthews_corrcoef` arithmetic (lm-eval's `mcc`); ids `< classes`."""
    rows = golds.shape[0]
    codes = (np.arange(rows)[:, None] * classes + golds) * classes
    confusion = np.bincount(
        (codes + predictions).ravel(), minlength=rows * classes * classes
    ).reshape(rows, classes, classes)
    confusion = confusion.astype(np.float64)
    t_sum = confusion.sum(axis=2)
    p_sum = confusion.sum(axis=1)
    n_correct = np.trace(confusion, axis1=1, axis2=2)
    n_samples = p_sum.sum(axis=1)
    cov_ytyp = n_correct * n_samples - np.sum(t_sum * p_sum, axis=1)
    cov_ypyp = n_samples**2 - np.sum(p_sum * p_sum, axis=1)
    cov_ytyt = n_samples**2 - np.sum(t_sum * t_sum, axis=1)
    product = cov_ypyp * cov_ytyt
    safe = np.where(product == 0, 1.0, product)
    return np.where(product == 0, 0.0, cov_ytyp / np.sqrt(safe))


def bootstrap_stderr(metric, golds, predictions, iters):
    """lm-eval's bootstrap standard error of `f1` or `mcc` over documents
    (`lm_eval.api.metrics.bootstrap_stderr`), resample for resample.

    lm-eval draws `iters // c` chunks of `c = min(1000, iters)` resamples,
    chunk `i` from `random.Random(i)`, each resample `rng.choices` of the
    `n` (gold, prediction) pairs in document order, and reports the sample
    standard deviation of the metric over the resamples. Here the same
    draws are made by NumPy from the same MT19937 state (`floor(u * n)`
    for each double `u`, as `choices` does), and the metric is computed
    for many resamples at once, with scikit-learn's arithmetic; the
    results equal lm-eval's on its goldens.

    Args:
        metric: `"f1"` (binary, class 1) or `"mcc"`.
        golds, predictions: the class ids of each document.
        iters: lm-eval's `bootstrap_iters`.

    Returns:
        float.
    """
    golds = np.asarray(golds, np.int64)
    predictions = np.asarray(predictions, np.int64)
    count = len(golds)
    chunk = min(_BOOTSTRAP_CHUNK, iters)
    if metric == "mcc":
        classes, encoded = np.unique(
            np.concatenate([golds, predictions]), return_inverse=True
        )
        golds, predictions = encoded[:count], encoded[count:]

        def statistic(g, p):
            # Python floats, as scikit-learn's matthews_corrcoef returns
            return _mcc_of_rows(g, p, len(classes)).tolist()
    elif metric == "f1":

        def statistic(g, p):
            # NumPy floats, as lm-eval's f1_score returns (np.max)
            return list(_f1_of_rows(g, p))
    else:
        raise ValueError(
            f"Received an invalid value for argument `metric`, expected "
            f"'f1' or 'mcc', got {metric!r}."
        )
    per_batch = max(1, _BOOTSTRAP_BATCH // count)
    values = []
    for seed in range(iters // chunk):
        generator = _python_random_state(seed)
        done = 0
        while done < chunk:
            rows = min(per_batch, chunk - done)
            draws = generator.random_sample((rows, count)) * float(count)
            index = np.floor(draws).astype(np.intp)
            values.extend(statistic(golds[index], predictions[index]))
            done += rows
    return sample_stddev(values)


def add_stderrs(results, per_document, iters):
    """Adds `<metric>_stderr` after each metric of `results`, as lm-eval
    reports it: `acc` by `mean_stderr`; `f1` and `mcc` by
    `bootstrap_stderr` with `iters` resamples; every other metric (the
    perplexities, SQuAD's scores) `"N/A"`, as are all where `iters` is 0 or
    there is one document.

    Args:
        results: dict metric -> value.
        per_document: dict metric -> what lm-eval aggregates: the `acc`
            of each document, or `(golds, predictions)` for `f1` / `mcc`.
        iters: lm-eval's `bootstrap_iters`.

    Returns:
        A new dict.
    """
    out = {}
    for name, value in results.items():
        out[name] = value
        if not isinstance(value, float):
            continue
        stderr = NOT_AVAILABLE
        items = per_document.get(name)
        if iters > 0 and items is not None:
            if name == "acc" and len(items) > 1:
                stderr = mean_stderr(items)
            elif name in ("f1", "mcc") and len(items[0]) > 1:
                stderr = bootstrap_stderr(name, *items, iters)
        out[f"{name}_stderr"] = stderr
    return out


# === Tasks ===


@dataclasses.dataclass(frozen=True)
class ChoiceTask:
    """A multiple-choice task of lm-eval over a GLUE task's documents.

    Attributes:
        name: lm-eval's task name.
        glue_task: the `kerasseq.data.glue` task its documents come from.
        split: the evaluated split (the few-shot examples come from
            `"train"`).
        prompt: document -> the text before the answer.
        choices: the answers, indexed by label.
        metrics: lm-eval's metrics of the task (`acc`, `f1`, `mcc`).
    """

    name: str
    glue_task: str
    split: str
    prompt: Callable[[dict], str]
    choices: tuple
    metrics: tuple = ("acc",)

    kind = "multiple_choice"


def _mnli_prompt(doc):
    hypothesis = doc["hypothesis"].strip()
    if not hypothesis.endswith("."):
        hypothesis += "."
    return (
        f"{doc['premise']}\nQuestion: {hypothesis} True, False or "
        "Neither?\nAnswer:"
    )


def _entailment_prompt(doc):
    return (
        f"{doc['sentence1']}\nQuestion: {doc['sentence2']} True or "
        "False?\nAnswer:"
    )


# lm-eval's GLUE tasks (lm_eval/tasks/glue/<task>/default.yaml)
CHOICE_TASKS = {
    task.name: task
    for task in (
        ChoiceTask(
            "cola",
            "cola",
            "validation",
            lambda d: (
                f"{d['sentence']}\nQuestion: Does this sentence make "
                "sense?\nAnswer:"
            ),
            ("no", "yes"),
            ("mcc",),
        ),
        ChoiceTask(
            "sst2",
            "sst2",
            "validation",
            lambda d: (
                f"{d['sentence']}\nQuestion: Is this sentence positive "
                "or negative?\nAnswer:"
            ),
            ("negative", "positive"),
        ),
        ChoiceTask(
            "mrpc",
            "mrpc",
            "validation",
            lambda d: (
                f"Sentence 1: {d['sentence1']}\nSentence 2: "
                f"{d['sentence2']}\nQuestion: Do both sentences mean the same "
                "thing?\nAnswer:"
            ),
            ("no", "yes"),
            ("acc", "f1"),
        ),
        ChoiceTask(
            "qqp",
            "qqp",
            "validation",
            lambda d: (
                f"Question 1: {d['question1']}\nQuestion 2: "
                f"{d['question2']}\nQuestion: Do both questions ask the same "
                "thing?\nAnswer:"
            ),
            ("no", "yes"),
            ("acc", "f1"),
        ),
        ChoiceTask(
            "mnli",
            "mnli",
            "validation_matched",
            _mnli_prompt,
            ("True", "Neither", "False"),
        ),
        ChoiceTask(
            "mnli_mismatch",
            "mnli",
            "validation_mismatched",
            _mnli_prompt,
            ("True", "Neither", "False"),
        ),
        ChoiceTask(
            "qnli",
            "qnli",
            "validation",
            lambda d: (
                f"{d['question']}\n{d['sentence']}\nQuestion: Does this "
                "response answer the question?\nAnswer:"
            ),
            ("yes", "no"),
        ),
        ChoiceTask(
            "rte", "rte", "validation", _entailment_prompt, ("True", "False")
        ),
        ChoiceTask(
            "wnli", "wnli", "validation", _entailment_prompt, ("False", "True")
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class GenerationTask:
    """A SQuAD task scored by greedy generation: lm-eval's `squadv2`
    prompt, the answer generated up to the first newline, scored by the
    official script of `version`.

    Attributes:
        name: the task's name in `--task`.
        version: the SQuAD version of the documents and of the scoring
            rules (`"1.1"` or `"2.0"`).
        metric_names: `squad_metrics.squad_scores`'s names (and
            `squad_metrics.squad_best_scores`') -> the task's.
        no_answer: whether each document also scores the continuation
            `" unanswerable"` after its prompt, as lm-eval's squadv2 does,
            whose probability gives the best scores over no-answer
            thresholds.
        note: what results.json says of the task where it departs from
            lm-eval, or `None`.
    """

    name: str
    version: str
    metric_names: dict
    no_answer: bool = False
    note: str | None = None

    kind = "generate_until"


# `squad_metrics.squad_scores`'s names -> lm-eval's (the HF `squad_v2`
# metric's)
_SQUAD_METRIC_NAMES = {
    "exact_match": "exact",
    "f1": "f1",
    "has_answer_exact_match": "HasAns_exact",
    "has_answer_f1": "HasAns_f1",
    "no_answer_exact_match": "NoAns_exact",
    "no_answer_f1": "NoAns_f1",
    "best_exact_match": "best_exact",
    "best_f1": "best_f1",
}
# what lm-eval's squadv2 scores as the no-answer continuation
NO_ANSWER = "unanswerable"

GENERATION_TASKS = {
    task.name: task
    for task in (
        # lm-eval's squadv2 (lm_eval/tasks/squadv2/task.py)
        GenerationTask("squadv2", "2.0", _SQUAD_METRIC_NAMES, no_answer=True),
        # SQuAD v1.1: lm-eval 0.4.13 has no such task (its squad_completion
        # is a cloze variant); squadv2's prompt and generation, the
        # official v1.1 script's exact match and F1
        GenerationTask(
            "squad",
            "1.1",
            {"exact_match": "exact_match", "f1": "f1"},
            note=(
                "lm-eval 0.4.13 has no SQuAD 1.1 task: the prompt, few-shot "
                "examples and greedy generation of its squadv2, scored by "
                "the official SQuAD 1.1 script's exact match and F1"
            ),
        ),
    )
}
ROLLING_TASKS = ("wikitext",)
TASKS = tuple(CHOICE_TASKS) + ROLLING_TASKS + tuple(GENERATION_TASKS)


def fewshot_context(prompt, answer, train_docs, k, rnd, doc=None):
    """The text before a document's prompt: `k` training documents drawn
    by `rnd`, each as its prompt, `" "`, its answer and `"\\n\\n"`
    (`prompt(doc)` and `answer(doc)` give the strings).

    As lm-eval's sampler: `k + 1` documents are drawn, those equal to the
    evaluated `doc` dropped and the first `k` kept (so the draws of later
    documents depend on this extra one); if fewer than `k` remain, `k` are
    drawn again from the documents other than `doc`.
    """
    if k == 0:
        return ""
    if k + 1 > len(train_docs):
        raise ValueError(
            f"--num_fewshot={k} needs more than {k} training documents to "
            f"draw examples from, got {len(train_docs)}."
        )
    shots = [d for d in rnd.sample(train_docs, k + 1) if d != doc][:k]
    if len(shots) < k:
        shots = rnd.sample([d for d in train_docs if d != doc], k)
    return "".join(
        prompt(d) + TARGET_DELIMITER + answer(d) + FEWSHOT_DELIMITER
        for d in shots
    )


def _mean(values):
    return float(np.mean(values)) if len(values) else float("nan")


def score_choices(
    task,
    scorer,
    tokenizer,
    docs,
    train_docs,
    k,
    prefix_id,
    bootstrap_iters=DEFAULT_BOOTSTRAP_ITERS,
):
    """Scores a `ChoiceTask` at `k` shots.

    Returns:
        `(metrics, samples)`: lm-eval's metrics of the task, each followed
        by its standard error as lm-eval reports it (`add_stderrs`, with
        `bootstrap_iters` resamples for `f1` and `mcc`), and one record per
        document (`doc`, `context`, `choices`, `loglikelihoods`,
        `is_greedy`, `prediction`, `target`).
    """
    rnd = random.Random(FEWSHOT_SEED)
    continuations = [TARGET_DELIMITER + c for c in task.choices]
    contexts, requests = [], []
    for doc in docs:
        context = fewshot_context(
            task.prompt,
            lambda d: task.choices[d["label"]],
            train_docs,
            k,
            rnd,
            doc,
        ) + task.prompt(doc)
        contexts.append(context)
        for continuation in continuations:
            requests.append(
                encode_pair(tokenizer, context, continuation, prefix_id)
            )
    scored = scorer.loglikelihoods(requests)
    width = len(continuations)
    samples, predictions = [], []
    for i, doc in enumerate(docs):
        mine = scored[i * width : (i + 1) * width]
        lls = [ll for ll, _ in mine]
        prediction = int(np.argmax(lls))
        predictions.append(prediction)
        samples.append(
            {
                "doc": doc,
                "context": contexts[i],
                "choices": continuations,
                "loglikelihoods": lls,
                "is_greedy": [
                    s[1] for s in scored[i * width : (i + 1) * width]
                ],
                "prediction": prediction,
                "target": int(doc["label"]),
            }
        )
    labels = np.asarray([d["label"] for d in docs])
    predictions = np.asarray(predictions)
    results = {}
    for metric in task.metrics:
        if metric == "acc":
            results["acc"] = _mean(labels == predictions)
        elif metric == "f1":
            results["f1"] = metrics_lib.f1_score(labels, predictions)
        elif metric == "mcc":
            results["mcc"] = metrics_lib.matthews_corrcoef(labels, predictions)
    per_document = {
        "acc": [
            float(p == y) for p, y in zip(predictions, labels, strict=True)
        ],
        "f1": (labels, predictions),
        "mcc": (labels, predictions),
    }
    return add_stderrs(results, per_document, bootstrap_iters), samples


# lm-eval's WikiText detokenizer (lm_eval/tasks/wikitext/
# preprocess_wikitext.py): the raw files' tokenised spacing undone, in order
_DETOKENIZE = (
    ("s '", "s'"),
    (re.compile(r"/' [0-9]/"), r"/'[0-9]/"),
    (" @-@ ", "-"),
    (" @,@ ", ","),
    (" @.@ ", "."),
    (" : ", ": "),
    (" ; ", "; "),
    (" . ", ". "),
    (" ! ", "! "),
    (" ? ", "? "),
    (" , ", ", "),
    (re.compile(r"\(\s*([^\)]*?)\s*\)"), r"(\1)"),
    (re.compile(r"\[\s*([^\]]*?)\s*\]"), r"[\1]"),
    (re.compile(r"{\s*([^}]*?)\s*}"), r"{\1}"),
    (re.compile(r"\"\s*([^\"]*?)\s*\""), r'"\1"'),
    (re.compile(r"'\s*([^']*?)\s*'"), r"'\1'"),
    ("= = = =", "===="),
    ("= = =", "==="),
    ("= =", "=="),
    (" \N{DEGREE SIGN} ", "\N{DEGREE SIGN}"),
    (" \n", "\n"),
    ("\n ", "\n"),
    (" N ", " 1 "),
    (" 's", "'s"),
)


def detokenize_wikitext(text):
    """WikiText's raw text with its tokenised spacing undone, as lm-eval
    scores it (`" @-@ "` -> `"-"`, `" , "` -> `", "`, ...)."""
    for pattern, replacement in _DETOKENIZE:
        if isinstance(pattern, str):
            text = text.replace(pattern, replacement)
        else:
            text = pattern.sub(replacement, text)
    return text


def _is_article_heading(line):
    """Whether a raw line is a top-level heading (` = Title = `, not
    ` = = Section = = `)."""
    line = line.replace("= = =", "===").replace("= =", "==").strip()
    return line.startswith("= ") and line.endswith(" =")


def wikitext_documents(raw):
    """The articles of a WikiText raw file, cut as the document-level
    dataset lm-eval reads (`EleutherAI/wikitext_document_level`) cuts it:
    each top-level heading line starts a document, which holds the lines up
    to the next one joined by newlines; what precedes a heading is dropped
    when it is only whitespace, and the last document keeps the file's
    end."""
    documents, lines = [], []
    for line in raw.split("\n"):
        if _is_article_heading(line):
            if "\n".join(lines).strip():
                documents.append("\n".join(lines))
            lines = []
        lines.append(line)
    documents.append("\n".join(lines))
    return documents


def score_rolling(scorer, tokenizer, pages, prefix_id):
    """WikiText's three metrics over documents `pages` (raw text).

    Returns:
        `(metrics, samples)`: `word_perplexity`, `byte_perplexity`,
        `bits_per_byte` (lm-eval's: log-likelihood of the detokenized
        text, words and bytes counted in the raw text), and per document its
        log-likelihood, words, bytes and windows.
    """
    samples = []
    for page in pages:
        text = detokenize_wikitext(page)
        windows = rolling_windows(
            tokenizer.encode(text), prefix_id, scorer.max_length
        )
        loglikelihood = sum(ll for ll, _ in scorer.loglikelihoods(windows))
        samples.append(
            {
                "doc": {"page": page},
                "loglikelihood": loglikelihood,
                "words": len(re.split(r"\s+", page)),
                "bytes": len(page.encode("utf-8")),
                "windows": len(windows),
            }
        )
    total = sum(s["loglikelihood"] for s in samples)
    words = sum(s["words"] for s in samples)
    num_bytes = sum(s["bytes"] for s in samples)
    results = {
        "word_perplexity": math.exp(-total / words),
        "byte_perplexity": math.exp(-total / num_bytes),
        "bits_per_byte": -total / num_bytes / math.log(2),
    }
    # lm-eval has no standard error for its perplexity aggregations
    results = add_stderrs(results, {}, 0)
    results = {
        **results,
        "perplexity_convention": (
            "lm-eval loglikelihood_rolling: each document scored whole in "
            f"disjoint windows of max_length={scorer.max_length} tokens, the "
            "first after the end-of-text token, the last reading a full "
            "window; detokenized text; words and bytes of the raw text"
        ),
    }
    return results, samples


def squad_prompt(doc):
    """lm-eval's SQuAD 2.0 prompt (lm_eval/tasks/squadv2/task.py), also
    the SQuAD 1.1 task's."""
    return (
        f"Title: {doc['title']}\n\nBackground: {doc['context']}\n\n"
        f"Question: {doc['question']}\n\nAnswer:"
    )


def squad_answer(doc):
    answers = doc["answers"]["text"]
    return answers[0] if answers else NO_ANSWER


def score_generation(
    scorer,
    tokenizer,
    docs,
    train_docs,
    k,
    end_id,
    max_tokens,
    task="squadv2",
):
    """A SQuAD task (`GENERATION_TASKS`, or its name) by greedy generation
    up to the first newline, scored with the official exact match and F1
    of the task's version: lm-eval's `exact`, `f1`, `HasAns_*`, `NoAns_*`,
    `best_exact`, `best_f1` for `squadv2`; `exact_match`, `f1` for `squad`
    (1.1).

    For squadv2, as lm-eval's: each document's log-likelihood of
    `" unanswerable"` after the prompt gives its no-answer probability
    (`exp`, held as float32 as the Hugging Face `squad_v2` metric holds
    it), which sets no prediction aside (the metric's threshold, 1.0, is
    never exceeded) but orders the questions for `best_exact` and
    `best_f1`."""
    if isinstance(task, str):
        task = GENERATION_TASKS[task]
    rnd = random.Random(FEWSHOT_SEED)
    samples = []
    for doc in docs:
        context = fewshot_context(
            squad_prompt, squad_answer, train_docs, k, rnd, doc
        ) + squad_prompt(doc)
        prediction = scorer.generate_until(
            tokenizer, context, ["\n"], max_tokens, end_id
        )
        samples.append(
            {"doc": doc, "context": context, "prediction": prediction}
        )
    predictions = {s["doc"]["id"]: s["prediction"] for s in samples}
    answers = {s["doc"]["id"]: s["doc"]["answers"]["text"] for s in samples}
    scores = squad_metrics.squad_scores(predictions, answers, task.version)
    if task.no_answer:
        requests = [
            encode_pair(
                tokenizer, s["context"], TARGET_DELIMITER + NO_ANSWER, end_id
            )
            for s in samples
        ]
        for sample, (loglikelihood, _) in zip(
            samples, scorer.loglikelihoods(requests), strict=True
        ):
            sample["no_answer_loglikelihood"] = loglikelihood
            sample["no_answer_probability"] = float(
                np.float32(math.exp(loglikelihood))
            )
        scores.update(
            squad_metrics.squad_best_scores(
                predictions,
                answers,
                {s["doc"]["id"]: s["no_answer_probability"] for s in samples},
            )
        )
    results = {
        theirs: scores[ours]
        for ours, theirs in task.metric_names.items()
        if ours in scores
    }
    # lm-eval aggregates SQuAD with the whole set's scorer: no stderr
    results = add_stderrs(results, {}, 0)
    if task.note:
        results["task_note"] = task.note
    return results, samples
