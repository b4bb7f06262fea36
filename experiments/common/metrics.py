"""The official evaluation metrics of GLUE, SQuAD and language modelling.

NumPy and the standard library only (and kerasseq's catalogue of names).
Classification metrics take 1-D arrays of class ids; correlations take 1-D
arrays of numbers; the SQuAD scores follow the rules of the official
evaluation script of the version asked for, v1.1 or v2.0, which differ on
answers that normalise to "" (such as "the").

References:
    - [Wang et al., 2019](https://arxiv.org/abs/1804.07461) (GLUE)
    - [Rajpurkar et al., 2016](https://arxiv.org/abs/1606.05250) (SQuAD 1.1)
    - [Rajpurkar et al., 2018](https://arxiv.org/abs/1806.03822) (SQuAD 2.0)
    - [Merity et al., 2016](https://arxiv.org/abs/1609.07843) (WikiText)
"""

import collections
import math
import re
import string

import numpy as np

from experiments.common.options import catalogue


def _check_pair(a, b, names, min_length):
    """Both as 1-D arrays of one length, at least `min_length` long."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(
            f"Expected 1-D `{names[0]}` and `{names[1]}`, got shapes "
            f"{a.shape} and {b.shape}."
        )
    if len(a) != len(b):
        raise ValueError(
            f"Expected `{names[0]}` and `{names[1]}` of the same length, got "
            f"lengths {len(a)} and {len(b)}."
        )
    if len(a) < min_length:
        raise ValueError(
            f"Expected at least {min_length} values in `{names[0]}` and "
            f"`{names[1]}`, got {len(a)}."
        )
    return a, b


def accuracy(labels, predictions):
    """The fraction of predictions equal to their label.

    Args:
        labels: 1-D array of class ids.
        predictions: 1-D array of class ids, as long as `labels`.

    Returns:
        float in [0, 1].

    Raises:
        ValueError: inputs that are not 1-D, of different lengths or empty.
    """
    labels, predictions = _check_pair(
        labels, predictions, ("labels", "predictions"), 1
    )
    return float(np.mean(labels == predictions))


def matthews_corrcoef(labels, predictions):
    """Matthews correlation coefficient (the metric of CoLA).

    The multiclass form from the confusion matrix `C` (Gorodkin, 2004), with
    `t = C.sum(1)` the true and `p = C.sum(0)` the predicted class counts,
    `c` the correct predictions and `s` all of them:
    `(c * s - p . t) / sqrt((s**2 - p . p) * (s**2 - t . t))`.
    For two classes it is `(tp * tn - fp * fn) / sqrt((tp + fp) * (tp + fn)
    * (tn + fp) * (tn + fn))`. A zero denominator (one class only among the
    labels or among the predictions) gives 0.0, as scikit-learn does.

    Args:
        labels: 1-D array of class ids (any integers).
        predictions: 1-D array of class ids, as long as `labels`.

    Returns:
        float in [-1, 1].

    Raises:
        ValueError: inputs that are not 1-D, of different lengths or empty.
    """
    labels, predictions = _check_pair(
        labels, predictions, ("labels", "predictions"), 1
    )
    classes, ids = np.unique(
        np.concatenate([labels, predictions]), return_inverse=True
    )
    k = len(classes)
    true, pred = ids[: len(labels)], ids[len(labels) :]
    # (K, K): rows are labels, columns predictions
    confusion = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
    confusion = confusion.astype(np.float64)
    t = confusion.sum(axis=1)
    p = confusion.sum(axis=0)
    correct = np.trace(confusion)
    s = confusion.sum()
    covariance = correct * s - p @ t
    denominator = (s * s - p @ p) * (s * s - t @ t)
    if denominator == 0:
        return 0.0
    return float(covariance / np.sqrt(denominator))


def f1_score(labels, predictions, positive=1):
    """Binary F1 of the class `positive` (the metric of MRPC and QQP).

    `2 * tp / (2 * tp + fp + fn)`, the harmonic mean of precision and recall;
    0.0 when there are neither true nor predicted positives.

    Args:
        labels: 1-D array of class ids.
        predictions: 1-D array of class ids, as long as `labels`.
        positive: the class id scored as positive.

    Returns:
        float in [0, 1].

    Raises:
        ValueError: inputs that are not 1-D, of different lengths or empty.
    """
    labels, predictions = _check_pair(
        labels, predictions, ("labels", "predictions"), 1
    )
    is_label = labels == positive
    is_pred = predictions == positive
    tp = int(np.sum(is_label & is_pred))
    fp = int(np.sum(~is_label & is_pred))
    fn = int(np.sum(is_label & ~is_pred))
    if 2 * tp + fp + fn == 0:
        return 0.0
    return 2 * tp / (2 * tp + fp + fn)


def pearson(x, y):
    """Pearson correlation coefficient (with Spearman, the metric of STS-B).

    Args:
        x: 1-D array of numbers, at least 2.
        y: 1-D array of numbers, as long as `x`.

    Returns:
        float in [-1, 1]; nan when `x` or `y` is constant (the correlation
        is undefined) or holds a nan.

    Raises:
        ValueError: inputs that are not 1-D, of different lengths or shorter
            than 2.
    """
    x, y = _check_pair(x, y, ("x", "y"), 2)
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    # compare values, not the centred sum of squares, which rounding can
    # leave a little above 0 for a constant input
    if np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    if np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    xc = x - x.mean()
    yc = y - y.mean()
    r = (xc @ yc) / np.sqrt((xc @ xc) * (yc @ yc))
    return float(np.clip(r, -1.0, 1.0))


def _rank(x):
    """1-based ranks of `x`; tied values share the average of their ranks."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts_run = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
    starts = np.flatnonzero(starts_run)
    ends = np.append(starts[1:], len(x))
    # the mean of the 1-based positions starts + 1, ..., ends
    run_ranks = (starts + 1 + ends) / 2
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = run_ranks[np.cumsum(starts_run) - 1]
    return ranks


def spearman(x, y):
    """Spearman rank correlation: the Pearson correlation of the ranks.

    Tied values get the average of the ranks they span.

    Args:
        x: 1-D array of numbers, at least 2.
        y: 1-D array of numbers, as long as `x`.

    Returns:
        float in [-1, 1]; nan when `x` or `y` is constant or holds a nan.

    Raises:
        ValueError: inputs that are not 1-D, of different lengths or shorter
            than 2.
    """
    x, y = _check_pair(x, y, ("x", "y"), 2)
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    if np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    return pearson(_rank(x), _rank(y))


GLUE_METRICS = {
    "cola": ("matthews_corrcoef",),
    "sst2": ("accuracy",),
    "mrpc": ("f1", "accuracy"),
    "stsb": ("pearson", "spearman"),
    "qqp": ("f1", "accuracy"),
    "mnli": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
}

_METRIC_FUNCTIONS = {
    "accuracy": accuracy,
    "f1": f1_score,
    "matthews_corrcoef": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}

# the two evaluation sets of MNLI, averaged into one MNLI score
_MNLI_SPLITS = ("mnli_matched", "mnli_mismatched")


def _glue_metric_names(task):
    if task in GLUE_METRICS:
        return GLUE_METRICS[task]
    if task in _MNLI_SPLITS:
        return GLUE_METRICS["mnli"]
    raise ValueError(
        f"Received an unknown GLUE task {task!r}; expected one of "
        f"{', '.join([*GLUE_METRICS, *_MNLI_SPLITS])}."
    )


def glue_metrics(task, labels, predictions):
    """The official metrics of one GLUE task.

    Args:
        task: a key of `GLUE_METRICS`, or `"mnli_matched"` or
            `"mnli_mismatched"` (scored as `"mnli"`).
        labels: 1-D array: class ids, or for `"stsb"` similarity scores.
        predictions: 1-D array like `labels`, as long.

    Returns:
        dict metric name -> float, the names of `GLUE_METRICS[task]`.

    Raises:
        ValueError: an unknown task, or inputs the metrics refuse.
    """
    names = _glue_metric_names(task)
    return {
        name: _METRIC_FUNCTIONS[name](labels, predictions) for name in names
    }


def glue_score(scores):
    """Per-task GLUE scores and their average, as the leaderboard makes them.

    A task's score is the unweighted mean of its metrics (`GLUE_METRICS`);
    the MNLI score is the mean of the matched and mismatched accuracies.
    The average is over the tasks present. Values keep their units
    (fractions in, fractions out); a nan propagates.

    Args:
        scores: dict task -> dict metric name -> value. Tasks are keys of
            `GLUE_METRICS`; MNLI comes either as `"mnli"` or as both
            `"mnli_matched"` and `"mnli_mismatched"`. Metrics other than the
            task's are ignored.

    Returns:
        `{"tasks": {task: score}, "average": float}`, tasks in the order of
        `GLUE_METRICS`.

    Raises:
        ValueError: no tasks, an unknown task, a task missing one of its
            metrics, or MNLI given other than as described.
    """
    if not scores:
        raise ValueError(f"Expected scores of at least one task, got {scores}.")
    task_means = {}
    for task, metrics in scores.items():
        names = _glue_metric_names(task)
        missing = [name for name in names if name not in metrics]
        if missing:
            raise ValueError(
                f"Task {task!r} needs the metrics {', '.join(names)}; got "
                f"{', '.join(metrics) or 'none'}."
            )
        task_means[task] = float(np.mean([metrics[n] for n in names]))
    splits = [s for s in _MNLI_SPLITS if s in task_means]
    if splits and (len(splits) != 2 or "mnli" in task_means):
        given = [k for k in scores if k == "mnli" or k in _MNLI_SPLITS]
        raise ValueError(
            "Expected MNLI as `mnli` or as both `mnli_matched` and "
            f"`mnli_mismatched`, got {', '.join(given)}."
        )
    if splits:
        task_means["mnli"] = float(np.mean([task_means.pop(s) for s in splits]))
    tasks = {t: task_means[t] for t in GLUE_METRICS if t in task_means}
    return {"tasks": tasks, "average": float(np.mean(list(tasks.values())))}


_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text):
    """The answer normalisation of the official SQuAD scripts.

    In order: lowercase; drop the ASCII punctuation of `string.punctuation`
    (other punctuation, such as "—" or "“", stays); replace the whole words
    "a", "an" and "the" by a space; collapse whitespace. So "U.S." becomes
    "us", "theater" stays, and "The  Cat!" becomes "cat".

    Args:
        text: str.

    Returns:
        str.
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


SQUAD_VERSIONS = catalogue.SQUAD_VERSIONS


def _check_version(version):
    if version not in SQUAD_VERSIONS:
        raise ValueError(
            f"Received an unknown SQuAD `version` {version!r}; expected one "
            f"of {', '.join(repr(v) for v in SQUAD_VERSIONS)}."
        )


def _gold_answers(ground_truths, version):
    """The normalised answers a prediction is scored against.

    1.1 keeps every answer, also those that normalise to "" (such as "the"),
    and needs at least one. 2.0 drops those, and scores a question left
    with none (`[]`: unanswerable) against the one answer "".
    """
    _check_version(version)
    if isinstance(ground_truths, str):
        raise TypeError(
            "Expected `ground_truths` to be a list of answer strings, got the "
            f"string {ground_truths!r}."
        )
    golds = [normalize_answer(g) for g in ground_truths]
    if version == "1.1":
        if not golds:
            raise ValueError(
                "SQuAD 1.1 scores questions with at least one answer (its "
                f"script fails on none), got {list(ground_truths)!r}; score "
                'unanswerable questions with version="2.0".'
            )
        return golds
    return [g for g in golds if g] or [""]


def _token_f1(prediction, gold, version):
    """Token F1 of two normalised answers, counting repeated tokens."""
    pred_tokens = prediction.split()
    gold_tokens = gold.split()
    # 2.0: abstaining is right exactly when the gold is empty too; 1.1 has
    # no such rule, and an empty side shares no token: 0
    if version == "2.0" and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction, ground_truths, version="1.1"):
    """1.0 if the normalised prediction equals a normalised ground truth.

    The rules of the official script of `version`: 1.1 compares with every
    answer, so the prediction "a" matches the answer "the" (both normalise
    to ""); 2.0 first drops the answers that normalise to "".

    Args:
        prediction: str.
        ground_truths: list of str; for `version="2.0"`, `[]` for a
            question without an answer, which only a prediction that
            normalises to "" matches.
        version: `"1.1"` or `"2.0"`.

    Returns:
        1.0 or 0.0, the maximum over the ground truths.

    Raises:
        ValueError: an unknown `version`, or `[]` with `version="1.1"`.
        TypeError: `ground_truths` given as one string.
    """
    golds = _gold_answers(ground_truths, version)
    prediction = normalize_answer(prediction)
    return float(any(prediction == g for g in golds))


def f1(prediction, ground_truths, version="1.1"):
    """Token F1 of the prediction, the best over the ground truths.

    Tokens are the whitespace-separated words of the normalised answers; the
    overlap counts repeated tokens (a multiset intersection). When either
    side normalises to "", 2.0's script gives 1.0 if both do and 0.0
    otherwise, and 1.1's gives 0.0 (no token in common), so under 1.1 the
    prediction "a" has F1 0.0 against "the" although it matches exactly.

    Args:
        prediction: str.
        ground_truths: list of str, as for `exact_match`.
        version: `"1.1"` or `"2.0"`.

    Returns:
        float in [0, 1].

    Raises:
        ValueError, TypeError: as `exact_match`.
    """
    golds = _gold_answers(ground_truths, version)
    prediction = normalize_answer(prediction)
    return max(_token_f1(prediction, g, version) for g in golds)


def _percent(values):
    return 100.0 * sum(values) / len(values)


def squad_scores(predictions, answers, version="1.1"):
    """Exact match and F1 over a SQuAD evaluation set, in percent.

    Equal to the `exact_match` and `f1` of the official v1.1 script, or the
    `exact`, `f1` and `HasAns_*` / `NoAns_*` of the v2.0 script (without a
    no-answer probability file), for the same questions and predictions.
    A question without a prediction scores 0 and counts, as in the v1.1
    script (the v2.0 script fails on it); predictions of questions not in
    `answers` are ignored.

    Args:
        predictions: dict question id -> predicted answer text ("" for "no
            answer").
        answers: dict question id -> list of answer texts; for
            `version="2.0"`, `[]` for a question without an answer.
        version: `"1.1"` or `"2.0"`, the official script whose rules apply.

    Returns:
        dict with `exact_match` and `f1` (percent), `count` (questions) and
        `missing` (questions without a prediction). For 2.0 also, as its
        script gives them, `has_answer_exact_match`, `has_answer_f1`,
        `has_answer_count` when some question has an answer and
        `no_answer_exact_match`, `no_answer_f1`, `no_answer_count` when
        some has none.

    Raises:
        ValueError: an unknown `version`, no questions, or a question
            without answers under 1.1.
        TypeError: a prediction or a list of answers that is a str where the
            other is expected.
    """
    _check_version(version)
    if not answers:
        raise ValueError(f"Expected at least one question, got {answers}.")
    exact = {}
    token_f1 = {}
    missing = 0
    for qid, ground_truths in answers.items():
        if qid not in predictions:
            # the answers are checked all the same
            _gold_answers(ground_truths, version)
            missing += 1
            exact[qid] = token_f1[qid] = 0.0
            continue
        prediction = predictions[qid]
        if not isinstance(prediction, str):
            raise TypeError(
                f"Expected the prediction of question {qid!r} to be a str, "
                f"got {type(prediction).__name__} {prediction!r}."
            )
        exact[qid] = exact_match(prediction, ground_truths, version)
        token_f1[qid] = f1(prediction, ground_truths, version)
    result = {
        "exact_match": _percent(list(exact.values())),
        "f1": _percent(list(token_f1.values())),
        "count": len(answers),
        "missing": missing,
    }
    if version == "2.0":
        # by the answers as given: an answer that normalises to "" still
        # makes its question answerable, as in the v2.0 script
        groups = {
            "has_answer": [qid for qid, a in answers.items() if a],
            "no_answer": [qid for qid, a in answers.items() if not a],
        }
        for group, qids in groups.items():
            if qids:
                result[f"{group}_exact_match"] = _percent(
                    [exact[q] for q in qids]
                )
                result[f"{group}_f1"] = _percent([token_f1[q] for q in qids])
                result[f"{group}_count"] = len(qids)
    return result


def squad_best_scores(predictions, answers, no_answer_probabilities):
    """SQuAD 2.0's best exact match and F1 over no-answer thresholds, as
    the official v2.0 script computes them given a no-answer probability
    per question (its `find_all_best_thresh`; lm-eval's squadv2 reports
    `best_exact` and `best_f1`).

    Every question whose no-answer probability is above a threshold counts
    as abstaining: it scores 1 if it has no answer and 0 otherwise, and the
    others keep their score. Going through the questions by increasing
    probability (ties in the given order), the threshold that abstains on
    all of them (the count of unanswerable questions) is lowered past each
    one in turn; a question whose score would become its own is one
    answered (its exact match or F1, if it has answers; -1 if it has none
    and the prediction is not the empty string, which wrongly answers it,
    even if it normalises to ""). The best running total wins, the first
    to reach it giving the threshold (0.0 where abstaining everywhere is
    best).

    Args:
        predictions: dict question id -> predicted text.
        answers: dict question id -> list of answer texts (`[]`: no
            answer); the questions scored, in order.
        no_answer_probabilities: dict question id -> float.

    Returns:
        dict with `best_exact_match` and `best_f1` (percent) and
        `best_exact_match_thresh` and `best_f1_thresh`.
    """
    qids = list(answers)
    if not qids:
        raise ValueError(f"Expected at least one question, got {answers}.")
    exact = {q: exact_match(predictions[q], answers[q], "2.0") for q in qids}
    token_f1 = {q: f1(predictions[q], answers[q], "2.0") for q in qids}
    order = sorted(qids, key=lambda q: no_answer_probabilities[q])
    result = {}
    for name, scores in (("exact_match", exact), ("f1", token_f1)):
        score = sum(1 for q in qids if not answers[q])
        best, threshold = score, 0.0
        for q in order:
            if answers[q]:
                score += scores[q]
            elif predictions[q]:
                score -= 1
            if score > best:
                best, threshold = score, no_answer_probabilities[q]
        result[f"best_{name}"] = 100.0 * best / len(qids)
        result[f"best_{name}_thresh"] = threshold
    return result


def perplexity(total_nll, count):
    """`exp(total_nll / count)`: perplexity per token, word or character.

    Args:
        total_nll: the summed negative log-likelihood, in nats.
        count: the number of units it is divided among (tokens, or for
            word-level perplexity `word_count` of the text); positive.

    Returns:
        float; inf when the exponential overflows.

    Raises:
        ValueError: `count` not positive.
    """
    if not count > 0:
        raise ValueError(f"Expected a positive `count`, got {count}.")
    try:
        return math.exp(float(total_nll) / count)
    except OverflowError:
        return float("inf")


def word_count(text):
    """The number of whitespace-separated words of `text` (`str.split()`).

    The denominator of word-level perplexity on WikiText: the summed
    negative log-likelihood of the text's tokens over its words, so that
    models with different tokenizers compare. WikiText's own tokens, such
    as "@-@" or ",", count as words.

    Args:
        text: str.

    Returns:
        int.
    """
    if not isinstance(text, str):
        raise TypeError(
            f"Expected `text` to be a str, got {type(text).__name__}."
        )
    return len(text.split())
