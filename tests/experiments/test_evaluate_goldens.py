"""`experiments.evaluate` against lm-evaluation-harness 0.4.13 itself:
goldens written once by `tests/fixtures/make_lm_eval_goldens.py` (lm-eval
on a tiny random GPT-2 over GPT-2's vocabulary, the same documents in
lm-eval's JSON and in the layouts kerasseq reads). Contexts must be the
same strings, log-likelihoods equal within 1e-4, metrics equal."""

import json
import os
import types

import pytest

from experiments.common import evaluation
from experiments.common import lm_scorer
from experiments.common import zero_shot
from experiments.common import zero_shot_tasks

FIXTURES = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "fixtures", "lm_eval"
)
GOLDENS = os.path.join(FIXTURES, "goldens.json")
DATA = {
    "glue": os.path.join(FIXTURES, "data", "glue"),
    "wikitext": os.path.join(FIXTURES, "data", "wikitext"),
    "squadv2": os.path.join(FIXTURES, "data", "squad"),
}


@pytest.fixture(scope="module")
def goldens():
    with open(GOLDENS) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def scorer():
    model, tokenizer = evaluation.load_model(os.path.join(FIXTURES, "model"))
    max_length = evaluation.default_max_length(model)
    return lm_scorer.Scorer(model, max_length, batch_size=8), tokenizer


def _settings(task, **kwargs):
    data = DATA.get(task, DATA["glue"])
    values = dict(data_dir=data, download="never", limit=None)
    return types.SimpleNamespace(**{**values, **kwargs})


def _runs(goldens, tasks):
    return [
        (task, int(k))
        for task in tasks
        if task in goldens["runs"]
        for k in goldens["runs"][task]
    ]


GLUE = ("sst2", "rte", "mrpc", "cola")


def test_max_length_is_the_one_lm_eval_used(goldens, scorer):
    assert scorer[0].max_length == goldens["about"].get("max_length", 64)


@pytest.mark.parametrize("task, k", [(t, k) for t in GLUE for k in (0, 3)])
def test_multiple_choice_equals_lm_eval(goldens, scorer, task, k):
    if str(k) not in goldens["runs"].get(task, {}):
        pytest.skip(f"no golden for {task} at {k} shots")
    run = goldens["runs"][task][str(k)]
    scoring, tokenizer = scorer
    docs, train = evaluation.read_documents(task, _settings(task))
    metrics, samples = zero_shot.score_choices(
        zero_shot_tasks.CHOICE_TASKS[task],
        scoring,
        tokenizer,
        docs,
        train,
        k,
        tokenizer.end_id,
        bootstrap_iters=goldens["about"]["bootstrap_iters"],
    )
    expected = sorted(run["samples"], key=lambda s: s["doc_id"])
    assert len(samples) == len(expected)
    for ours, theirs in zip(samples, expected, strict=True):
        assert ours["context"] == theirs["arguments"][0][0]
        assert ours["choices"] == [a[1] for a in theirs["arguments"]]
        lls = [r[0] for r in theirs["filtered_resps"]]
        assert ours["loglikelihoods"] == pytest.approx(lls, abs=1e-4)
        assert ours["is_greedy"] == [r[1] for r in theirs["filtered_resps"]]
    # the metrics and their standard errors (acc: the mean's; f1, mcc:
    # lm-eval's bootstrap, resample for resample)
    assert {f"{name},none" for name in metrics} == {
        key for key in run["results"] if key.endswith(",none")
    }
    for name, value in metrics.items():
        assert value == pytest.approx(run["results"][f"{name},none"], abs=1e-6)


def test_wikitext_equals_lm_eval(goldens, scorer):
    run = goldens["runs"]["wikitext"]["0"]
    scoring, tokenizer = scorer
    docs, _ = evaluation.read_documents("wikitext", _settings("wikitext"))
    expected = sorted(run["samples"], key=lambda s: int(s["doc_id"]))
    # the articles as the document-level dataset splits the raw file
    assert [d["page"] for d in docs] == [s["doc"]["page"] for s in expected]
    metrics, samples = zero_shot.score_rolling(
        scoring, tokenizer, [d["page"] for d in docs], tokenizer.end_id
    )
    for ours, theirs in zip(samples, expected, strict=True):
        assert ours["windows"] == theirs["num_windows"]
        assert ours["loglikelihood"] == pytest.approx(
            theirs["filtered_resps"][0], abs=1e-3
        )
    for name in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert metrics[name] == pytest.approx(
            run["results"][f"{name},none"], rel=1e-5
        )
        expected = run["results"][f"{name}_stderr,none"]
        assert metrics[f"{name}_stderr"] == expected == "N/A"


def test_squad_generation_equals_lm_eval(goldens, scorer):
    run = goldens["runs"]["squadv2"]["0"]
    scoring, tokenizer = scorer
    max_tokens = goldens["about"]["max_gen_toks"]["squadv2"]
    docs, train = evaluation.read_documents("squadv2", _settings("squadv2"))
    metrics, samples = zero_shot.score_generation(
        scoring, tokenizer, docs, train, 0, tokenizer.end_id, max_tokens
    )
    expected = sorted(run["samples"], key=lambda s: int(s["doc_id"]))
    for ours, theirs in zip(samples, expected, strict=True):
        assert ours["doc"]["id"] == theirs["doc"]["id"]
        assert ours["context"] == theirs["arguments"][0][0]
        assert ours["prediction"] == theirs["filtered_resps"][0]
        # the second request: " unanswerable" after the same context
        assert theirs["arguments"][1] == [ours["context"], " unanswerable"]
        assert ours["no_answer_loglikelihood"] == pytest.approx(
            theirs["filtered_resps"][1][0], abs=1e-4
        )
        probability = theirs["metrics"]["exact"][0]["no_answer_probability"]
        assert ours["no_answer_probability"] == pytest.approx(
            probability, rel=1e-3
        )
    # every metric lm-eval reports (best_exact, best_f1 included; not their
    # thresholds), each with its stderr: N/A
    assert {f"{name},none" for name in metrics} == {
        key for key in run["results"] if key.endswith(",none")
    }
    for name, value in metrics.items():
        expected = run["results"][f"{name},none"]
        if name.endswith("_stderr"):
            assert value == expected == "N/A"
        else:
            assert value == pytest.approx(expected, abs=1e-9), name


def test_gpt2_tokens_equal_the_ones_lm_eval_used(goldens, scorer):
    """Every (context, continuation) pair lm-eval encoded with Hugging
    Face's GPT-2 tokenizer, encoded alike by kerasseq's (few-shot
    separators, WikiText's spacing and quotes included)."""
    _, tokenizer = scorer
    pairs = 0
    for task in GLUE:
        for run in goldens["runs"][task].values():
            for sample in run["samples"]:
                for (context, continuation), tokens in zip(
                    sample["arguments"], sample["tokens"], strict=True
                ):
                    ours = lm_scorer.encode_pair(
                        tokenizer, context, continuation, tokenizer.end_id
                    )
                    assert list(ours) == tokens
                    pairs += 1
    for sample in goldens["runs"]["wikitext"]["0"]["samples"]:
        text = sample["arguments"][0][0]
        assert tokenizer.encode(text) == sample["tokens"][0][0]
        pairs += 1
    assert pairs > 100
