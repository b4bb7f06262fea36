"""Standard errors of the zero-shot metrics, as lm-evaluation-harness
(0.4.13) reports them: the standard error of a mean for accuracy, and
bootstrap resamples, drawn with lm-eval's seeds, for F1 and the Matthews
correlation; `NOT_AVAILABLE` where lm-eval has none.
"""

import math
import random

import numpy as np

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
