"""The official scores of SQuAD: exact match and F1 over normalised
answers, by the rules of the evaluation script of the version asked for,
v1.1 or v2.0, which differ on answers that normalise to "" (such as "the").

NumPy and the standard library only (and kerasseq's catalogue of names).

References:
    - [Rajpurkar et al., 2016](https://arxiv.org/abs/1606.05250) (SQuAD 1.1)
    - [Rajpurkar et al., 2018](https://arxiv.org/abs/1806.03822) (SQuAD 2.0)
"""

import collections
import re
import string

from experiments.common.options import catalogue

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
