import json
import math
import pathlib

import numpy as np
import pytest

from experiments.common.metrics import GLUE_METRICS
from experiments.common.metrics import accuracy
from experiments.common.metrics import f1_score
from experiments.common.metrics import glue_metrics
from experiments.common.metrics import glue_score
from experiments.common.metrics import matthews_corrcoef
from experiments.common.metrics import pearson
from experiments.common.metrics import perplexity
from experiments.common.metrics import spearman
from experiments.common.metrics import word_count
from experiments.common.squad_metrics import exact_match
from experiments.common.squad_metrics import f1
from experiments.common.squad_metrics import normalize_answer
from experiments.common.squad_metrics import squad_best_scores
from experiments.common.squad_metrics import squad_scores

# tp=3 (first three), tn=2, fp=1, fn=1
BINARY_LABELS = [1, 1, 1, 0, 0, 0, 1]
BINARY_PREDICTIONS = [1, 1, 1, 0, 0, 1, 0]


def test_accuracy():
    # 2 of 4 equal
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert accuracy(np.array([2, 0]), np.array([2, 0])) == 1.0


def test_matthews_binary_by_hand():
    # (3*2 - 1*1) / sqrt((3+1)(3+1)(2+1)(2+1)) = 5 / sqrt(144) = 5/12
    mcc = matthews_corrcoef(BINARY_LABELS, BINARY_PREDICTIONS)
    assert mcc == pytest.approx(5 / 12, abs=1e-12)


def test_matthews_does_not_depend_on_label_values():
    labels = np.where(np.array(BINARY_LABELS) == 1, 7, -3)
    predictions = np.where(np.array(BINARY_PREDICTIONS) == 1, 7, -3)
    assert matthews_corrcoef(labels, predictions) == pytest.approx(5 / 12)
    # inverted: tp=tn=0, fp=fn=2 -> (0 - 4) / sqrt(2*2*2*2) = -1
    assert matthews_corrcoef([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1)


def test_matthews_multiclass_by_hand():
    # confusion (rows labels): [[2,0,0],[1,0,1],[0,1,1]]
    # t = [2,2,2], p = [3,1,2], correct c = 3, s = 6
    # (3*6 - (6+2+4)) / sqrt((36 - (9+1+4)) * (36 - 12)) = 6 / sqrt(22*24)
    mcc = matthews_corrcoef([0, 1, 2, 0, 1, 2], [0, 2, 1, 0, 0, 2])
    assert mcc == pytest.approx(6 / math.sqrt(528), abs=1e-12)


def test_matthews_zero_denominator_is_zero():
    # one predicted class: tp+fp = 0 or tn+fn = 0
    assert matthews_corrcoef([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0
    # one label class
    assert matthews_corrcoef([1, 1, 1], [0, 1, 0]) == 0.0
    assert matthews_corrcoef([1], [1]) == 0.0


def test_f1_score_by_hand():
    labels = [1, 1, 0, 0, 1]
    predictions = [1, 0, 1, 0, 1]
    # positive 1: tp=2, fp=1, fn=1 -> 2*2 / (2*2 + 1 + 1) = 2/3
    assert f1_score(labels, predictions) == pytest.approx(2 / 3)
    # positive 0: tp=1, fp=1, fn=1 -> 2 / (2 + 1 + 1) = 1/2
    assert f1_score(labels, predictions, positive=0) == pytest.approx(0.5)


def test_f1_score_without_positives():
    # no true and no predicted positives: 0/0, defined as 0
    assert f1_score([0, 0, 0], [0, 0, 0]) == 0.0
    # positives only among labels, or only among predictions
    assert f1_score([1, 0], [0, 0]) == 0.0
    assert f1_score([0, 0], [1, 0]) == 0.0


def test_pearson_by_hand_and_of_linear_maps():
    # centred x = [-1,0,1], y = [-1,1,0]: 1 / sqrt(2 * 2) = 1/2
    assert pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    x = np.array([0.3, -1.0, 2.5, 4.0, 1.1])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0, abs=1e-12)
    assert pearson(x, -3 * x + 0.5) == pytest.approx(-1.0, abs=1e-12)
    assert -1.0 <= pearson(x, -x) <= 1.0


def test_spearman_ties_get_average_ranks():
    x = [10, 20, 20, 30]
    y = [1, 3, 2, 4]
    # ranks of x: [1, 2.5, 2.5, 4]; of y: [1, 3, 2, 4]
    # centred: [-1.5, 0, 0, 1.5] and [-1.5, .5, -.5, 1.5]
    # 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert spearman(x, y) == pytest.approx(math.sqrt(0.9), abs=1e-12)
    assert spearman(x, y) == pytest.approx(pearson([1, 2.5, 2.5, 4], y))
    # three tied at the top: ranks [3, 3, 3, 1] against [2, 3, 4, 1]
    # centred [.5, .5, .5, -1.5] and [-.5, .5, 1.5, -1.5]
    # (-.25 + .25 + .75 + 2.25) / sqrt(3 * 5) = 3 / sqrt(15)
    expected = 3 / math.sqrt(15)
    assert spearman([5, 5, 5, 1], [2, 3, 4, 1]) == pytest.approx(expected)


def test_spearman_is_invariant_under_monotone_maps():
    rng = np.random.default_rng(42)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    assert spearman(np.exp(x), y**3) == pytest.approx(spearman(x, y))
    assert spearman(x, -(y**3)) == pytest.approx(-spearman(x, y))
    # ranks, not values: a monotone but non-linear map correlates fully
    assert spearman(x, np.exp(3 * x)) == pytest.approx(1.0)
    assert pearson(x, np.exp(3 * x)) < 0.9


def test_correlations_of_constant_input_are_nan():
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1, 2, 3], [0.1, 0.1, 0.1]))
    # a mean that rounds away from the value must still count as constant
    assert math.isnan(pearson([0.1] * 3, [1, 2, 3]))
    assert math.isnan(spearman([1, float("nan"), 2], [1, 2, 3]))


@pytest.mark.parametrize("metric", [pearson, spearman])
def test_correlations_refuse_bad_lengths(metric):
    with pytest.raises(ValueError, match="lengths 3 and 2"):
        metric([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2 values.*got 1"):
        metric([1], [2])


@pytest.mark.parametrize(
    "metric", [accuracy, matthews_corrcoef, f1_score, pearson]
)
def test_metrics_refuse_bad_shapes(metric):
    with pytest.raises(ValueError, match=r"1-D.*\(3, 2\)"):
        metric([0, 1, 1], np.zeros((3, 2)))


@pytest.mark.parametrize("metric", [accuracy, matthews_corrcoef, f1_score])
def test_classification_metrics_refuse_bad_lengths(metric):
    with pytest.raises(ValueError, match="lengths 2 and 3"):
        metric([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="got 0"):
        metric([], [])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The  Cat!", "cat"),
        # punctuation inside a word goes, the letters join
        ("U.S.", "us"),
        ("Don't", "dont"),
        # articles only as whole words
        ("the theater", "theater"),
        ("another anthem", "another anthem"),
        ("An apple a day", "apple day"),
        # punctuation goes before articles: "the-cat" is one word "thecat"
        ("the-cat", "thecat"),
        ("  a  ", ""),
        # only string.punctuation: unicode punctuation stays
        ("Café—Bar", "café—bar"),
        ("“Quoted”", "“quoted”"),
        ("\tNew\nYork ", "new york"),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_and_f1_take_the_best_ground_truth():
    golds = ["Colorado", "the Denver Broncos!", "Broncos"]
    assert exact_match("denver broncos", golds) == 1.0
    assert exact_match("Denver", golds) == 0.0
    # against "denver broncos": precision 1, recall 1/2 -> 2/3; others 0
    assert f1("Denver", golds) == pytest.approx(2 / 3)
    assert f1("Broncos", golds) == 1.0


def test_f1_counts_repeated_tokens():
    # normalised: [cat, sat, on, mat] vs [cat, on, mat]; overlap 3
    # precision 3/4, recall 3/3: 2 * 3/4 / (7/4) = 6/7
    assert f1("the cat sat on the mat", ["a cat on mat"]) == pytest.approx(
        6 / 7
    )
    # multiset overlap min(2,1) + min(1,2) = 2: precision = recall = 2/3
    # (a set overlap would give 1.0)
    assert f1("cat cat dog", ["cat dog dog"]) == pytest.approx(2 / 3)
    # overlap min(2,2) = 2: precision 2/3, recall 2/2 -> 4/5
    assert f1("cat cat dog", ["cat cat"]) == pytest.approx(0.8)
    assert f1("dog", ["cat"]) == 0.0


def test_no_answer_questions():
    # 2.0: an unanswerable question is matched only by abstaining
    assert exact_match("", [], "2.0") == 1.0
    assert f1("", [], "2.0") == 1.0
    # "The." normalises to "", which is abstaining
    assert exact_match("The.", [], "2.0") == 1.0
    assert f1("The.", [], "2.0") == 1.0
    assert exact_match("cat", [], "2.0") == 0.0
    assert f1("cat", [], "2.0") == 0.0
    # abstaining on an answerable question
    for version in ("1.1", "2.0"):
        assert exact_match("", ["cat"], version) == 0.0
        assert f1("", ["cat"], version) == 0.0


def test_answers_that_normalise_to_nothing_follow_the_version():
    # 1.1 keeps the answer "the": "a" and "the" both normalise to ""
    assert exact_match("a", ["the", "cat"], version="1.1") == 1.0
    assert exact_match("a", ["the", "cat"]) == 1.0  # 1.1 by default
    # ... but F1 has no token in common: 0
    assert f1("a", ["the", "cat"], version="1.1") == 0.0
    # 2.0 drops "the" and compares with "cat" only
    assert exact_match("a", ["the", "cat"], version="2.0") == 0.0
    assert f1("a", ["the", "cat"], version="2.0") == 0.0
    # 2.0, nothing left: scored as unanswerable, abstaining is right
    assert exact_match("a", ["the"], version="2.0") == 1.0
    assert f1("a", ["the"], version="2.0") == 1.0
    assert exact_match("a", ["the"], version="1.1") == 1.0
    assert f1("a", ["the"], version="1.1") == 0.0


def test_squad_metrics_refuse_an_unknown_version():
    for call in (
        lambda: exact_match("a", ["a"], version="2"),
        lambda: f1("a", ["a"], version="2"),
        lambda: squad_scores({"q": "a"}, {"q": ["a"]}, version="2"),
    ):
        with pytest.raises(ValueError) as error:
            call()
        message = str(error.value)
        assert "version` '2'" in message and "'1.1', '2.0'" in message


def test_squad_v1_refuses_questions_without_answers():
    # the v1.1 script fails on them (max of no scores)
    with pytest.raises(ValueError, match='version="2.0"'):
        exact_match("", [], "1.1")
    with pytest.raises(ValueError, match="at least one answer"):
        squad_scores({"q": "x"}, {"q": []}, "1.1")
    # also when the question has no prediction
    with pytest.raises(ValueError, match="at least one answer"):
        squad_scores({}, {"q": []}, "1.1")


def test_ground_truths_must_be_a_list():
    with pytest.raises(TypeError, match="the string 'cat'"):
        exact_match("cat", "cat")


GOLDENS = json.loads(
    (pathlib.Path(__file__).parents[1] / "fixtures")
    .joinpath("squad_official_goldens.json")
    .read_text()
)


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_per_question_scores_equal_the_official_scripts(version):
    cases = GOLDENS["cases"]
    # the goldens hold the cases where the versions differ
    assert any(c["1.1"] and c["1.1"] != c["2.0"] for c in cases)
    for case in cases:
        prediction, answers = case["prediction"], case["answers"]
        expected = case[version]
        if expected is None:
            # the official v1.1 script fails on a question without answers
            with pytest.raises(ValueError):
                exact_match(prediction, answers, version)
            continue
        where = f"{case['id']} ({case['note']})"
        assert exact_match(prediction, answers, version) == expected["exact"], (
            where
        )
        assert f1(prediction, answers, version) == pytest.approx(
            expected["f1"], rel=1e-12, abs=0
        ), where


# the official scripts' names for the aggregate keys
OFFICIAL_KEYS = {
    "1.1": {"exact_match": "exact_match", "f1": "f1"},
    "2.0": {
        "exact_match": "exact",
        "f1": "f1",
        "count": "total",
        "has_answer_exact_match": "HasAns_exact",
        "has_answer_f1": "HasAns_f1",
        "has_answer_count": "HasAns_total",
        "no_answer_exact_match": "NoAns_exact",
        "no_answer_f1": "NoAns_f1",
        "no_answer_count": "NoAns_total",
    },
}


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_squad_scores_equal_the_official_scripts(version):
    golden = GOLDENS["aggregates"][version]
    scores = squad_scores(golden["predictions"], golden["questions"], version)
    official = golden["official"]
    keys = OFFICIAL_KEYS[version]
    assert set(official) == set(keys.values())
    for ours, theirs in keys.items():
        assert scores[ours] == pytest.approx(official[theirs], rel=1e-12), ours
    assert scores["count"] == len(golden["questions"])
    missing = set(golden["questions"]) - set(golden["predictions"])
    assert scores["missing"] == len(missing)
    if version == "1.1":
        # one question without a prediction, scored 0 and counted
        assert missing
        assert not any(k.startswith(("has_", "no_")) for k in scores)


# what Hugging Face's squad_v2 metric (lm-eval's squadv2 aggregation) gives
# sets of questions with no-answer probabilities
# (tests/fixtures/make_squad_v2_best_goldens.py)
BEST_GOLDENS = json.loads(
    (pathlib.Path(__file__).parents[1] / "fixtures")
    .joinpath("squad_v2_best_goldens.json")
    .read_text()
)


@pytest.mark.parametrize(
    "golden", BEST_GOLDENS["sets"], ids=lambda g: g["about"]
)
def test_squad_best_scores_equal_the_v2_metric(golden):
    questions = golden["questions"]
    predictions = {q["id"]: q["prediction"] for q in questions}
    answers = {q["id"]: q["answers"] for q in questions}
    # the metric's features hold the probabilities as float32
    probabilities = {
        q["id"]: float(np.float32(q["no_answer_probability"]))
        for q in questions
    }
    best = squad_best_scores(predictions, answers, probabilities)
    expected = golden["scores"]
    for ours, theirs in {
        "best_exact_match": "best_exact",
        "best_exact_match_thresh": "best_exact_thresh",
        "best_f1": "best_f1",
        "best_f1_thresh": "best_f1_thresh",
    }.items():
        assert best[ours] == pytest.approx(expected[theirs], rel=1e-12), ours
    # and the plain scores of the same questions, as the metric gives them
    scores = squad_scores(predictions, answers, "2.0")
    assert scores["exact_match"] == pytest.approx(expected["exact"], rel=1e-12)
    assert scores["f1"] == pytest.approx(expected["f1"], rel=1e-12)


def test_squad_best_scores_beat_the_plain_ones_somewhere():
    # the goldens hold a set where a threshold between the questions wins
    first = BEST_GOLDENS["sets"][0]["scores"]
    assert first["best_exact"] > first["exact"]
    assert 0 < first["best_f1_thresh"] < 0.9


def test_squad_scores_aggregate_and_split_by_answerability():
    answers = {
        "q1": ["cat"],
        "q2": ["dog house", "house"],
        "q3": [],
        "q4": ["red"],
        "q5": [],
    }
    predictions = {
        "q1": "The cat",  # EM 1, F1 1
        "q2": "big house",  # EM 0, F1 max(1/2, 2/3) = 2/3
        "q3": "",  # EM 1, F1 1
        # q4 missing: EM 0, F1 0
        "q5": "blue",  # EM 0, F1 0
        "other": "ignored",
    }
    scores = squad_scores(predictions, answers, version="2.0")
    # EM 2/5; F1 (1 + 2/3 + 1) / 5 = 8/15
    assert scores["exact_match"] == pytest.approx(40.0)
    assert scores["f1"] == pytest.approx(100 * 8 / 15)
    assert scores["count"] == 5
    assert scores["missing"] == 1
    # answerable q1, q2, q4: EM 1/3, F1 (1 + 2/3) / 3 = 5/9
    assert scores["has_answer_exact_match"] == pytest.approx(100 / 3)
    assert scores["has_answer_f1"] == pytest.approx(100 * 5 / 9)
    assert scores["has_answer_count"] == 3
    # unanswerable q3, q5
    assert scores["no_answer_exact_match"] == pytest.approx(50.0)
    assert scores["no_answer_f1"] == pytest.approx(50.0)
    assert scores["no_answer_count"] == 2


def test_squad_scores_split_only_for_v2():
    predictions, answers = (
        {"a": "Paris", "b": "x"},
        {"a": ["paris"], "b": ["y"]},
    )
    scores = squad_scores(predictions, answers, "1.1")
    assert scores == {"exact_match": 50.0, "f1": 50.0, "count": 2, "missing": 0}
    # as the v2.0 script, which reports HasAns_* whenever a question has
    # an answer
    scores = squad_scores(predictions, answers, "2.0")
    assert scores["has_answer_exact_match"] == 50.0
    assert scores["has_answer_count"] == 2
    assert "no_answer_count" not in scores


def test_squad_scores_refuse_bad_input():
    with pytest.raises(ValueError, match="at least one question"):
        squad_scores({"a": "x"}, {})
    with pytest.raises(TypeError, match="question 'a'.*NoneType"):
        squad_scores({"a": None}, {"a": ["x"]})


@pytest.mark.parametrize("task", list(GLUE_METRICS))
def test_glue_metrics_names_every_metric_of_the_task(task):
    labels = [0.0, 1.0, 2.5] if task == "stsb" else [0, 1, 1]
    result = glue_metrics(task, labels, labels)
    assert tuple(result) == GLUE_METRICS[task]
    assert all(v == pytest.approx(1.0) for v in result.values())


def test_glue_metrics_by_task():
    cola = glue_metrics("cola", BINARY_LABELS, BINARY_PREDICTIONS)
    assert cola == {"matthews_corrcoef": pytest.approx(5 / 12)}
    # tp=3, fp=1, fn=1: F1 6/8; accuracy 5/7
    mrpc = glue_metrics("mrpc", BINARY_LABELS, BINARY_PREDICTIONS)
    assert mrpc == {"f1": pytest.approx(0.75), "accuracy": pytest.approx(5 / 7)}
    stsb = glue_metrics("stsb", [10, 20, 20, 30], [1.0, 3.0, 2.0, 4.0])
    assert stsb["spearman"] == pytest.approx(math.sqrt(0.9))
    assert stsb["pearson"] == pytest.approx(
        pearson([10, 20, 20, 30], [1, 3, 2, 4])
    )
    assert glue_metrics("mnli_mismatched", [0, 1, 2], [0, 2, 2]) == {
        "accuracy": pytest.approx(2 / 3)
    }


def test_glue_metrics_refuse_unknown_task():
    with pytest.raises(ValueError, match="'sst-2'.*sst2.*wnli"):
        glue_metrics("sst-2", [0], [0])


def test_glue_score_averages_metrics_then_tasks():
    scores = {
        "cola": {"matthews_corrcoef": 0.5},
        "mrpc": {"f1": 0.9, "accuracy": 0.8, "loss": 7.0},
        "mnli_matched": {"accuracy": 0.8},
        "mnli_mismatched": {"accuracy": 0.7},
        "stsb": {"pearson": 0.9, "spearman": 0.8},
    }
    result = glue_score(scores)
    # mrpc (0.9 + 0.8) / 2, the extra "loss" ignored; mnli (0.8 + 0.7) / 2
    assert result["tasks"] == {
        "cola": pytest.approx(0.5),
        "mrpc": pytest.approx(0.85),
        "stsb": pytest.approx(0.85),
        "mnli": pytest.approx(0.75),
    }
    assert list(result["tasks"]) == ["cola", "mrpc", "stsb", "mnli"]
    # (0.5 + 0.85 + 0.85 + 0.75) / 4
    assert result["average"] == pytest.approx(0.7375)
    one_mnli = glue_score({"mnli": {"accuracy": 0.6}, "rte": {"accuracy": 0.7}})
    assert one_mnli["tasks"] == {"mnli": 0.6, "rte": 0.7}
    assert one_mnli["average"] == pytest.approx(0.65)


@pytest.mark.parametrize(
    "scores, message",
    [
        ({}, "at least one task"),
        ({"squad": {"f1": 1.0}}, "'squad'.*cola"),
        ({"mrpc": {"f1": 1.0}}, "needs the metrics f1, accuracy; got f1"),
        ({"mnli_matched": {"accuracy": 0.8}}, "got mnli_matched"),
        (
            {"mnli": {"accuracy": 0.8}, "mnli_matched": {"accuracy": 0.8}},
            "got mnli, mnli_matched",
        ),
    ],
)
def test_glue_score_refuses_bad_scores(scores, message):
    with pytest.raises(ValueError, match=message):
        glue_score(scores)


def test_perplexity_from_log_probabilities():
    # -log(1/2) - log(1/4) - log(1/8) = (1 + 2 + 3) log 2; mean 2 log 2
    # exp(2 log 2) = 4
    total_nll = -sum(math.log(p) for p in (1 / 2, 1 / 4, 1 / 8))
    assert perplexity(total_nll, 3) == pytest.approx(4.0, rel=1e-12)
    # per word: the same nll over 2 words, exp(3 log 2) = 8
    assert perplexity(total_nll, word_count("two words")) == pytest.approx(8.0)
    assert perplexity(0.0, 5) == 1.0
    assert perplexity(1e6, 1) == float("inf")


@pytest.mark.parametrize("count", [0, -2])
def test_perplexity_refuses_non_positive_count(count):
    with pytest.raises(ValueError, match=f"positive `count`, got {count}"):
        perplexity(1.0, count)


def test_word_count():
    # WikiText tokens such as "@-@" and "," are words
    assert word_count(" The cat  sat\n on the mat @-@ , ") == 8
    assert word_count("") == 0
    with pytest.raises(TypeError, match="got list"):
        word_count(["a", "b"])
