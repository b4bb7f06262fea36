"""The official evaluation metrics of GLUE and of language modelling
(SQuAD's are in `experiments.common.squad_metrics`).

NumPy and the standard library only. Classification metrics take 1-D
arrays of class ids, correlations 1-D arrays of numbers; both raise
`ValueError` for inputs that are not 1-D, of different lengths, or too
short (empty; correlations: fewer than two values).

References:
    - [Wang et al., 2019](https://arxiv.org/abs/1804.07461) (GLUE)
    - [Merity et al., 2016](https://arxiv.org/abs/1609.07843) (WikiText)
"""

import math

import numpy as np


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


def _check_labels(labels, predictions):
    return _check_pair(labels, predictions, ("labels", "predictions"), 1)


def accuracy(labels, predictions):
    """The fraction of predictions equal to their label.

    Args:
        labels: 1-D array of class ids.
        predictions: 1-D array of class ids, as long as `labels`.

    Returns:
        float in [0, 1].
    """
    labels, predictions = _check_labels(labels, predictions)
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
    """
    labels, predictions = _check_labels(labels, predictions)
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
    """
    labels, predictions = _check_labels(labels, predictions)
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
