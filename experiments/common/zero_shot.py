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

The tasks are defined in `zero_shot_tasks`, the model is read through
`lm_scorer.Scorer`, and standard errors come from `standard_errors`.
"""

import math
import random
import re

import numpy as np

from experiments.common import metrics as metrics_lib
from experiments.common import squad_metrics
from experiments.common.lm_scorer import encode_pair
from experiments.common.lm_scorer import rolling_windows
from experiments.common.standard_errors import DEFAULT_BOOTSTRAP_ITERS
from experiments.common.standard_errors import add_stderrs
from experiments.common.zero_shot_tasks import GENERATION_TASKS
from experiments.common.zero_shot_tasks import NO_ANSWER

FEWSHOT_SEED = 1234
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"


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
