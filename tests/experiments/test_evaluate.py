"""Zero/few-shot evaluation (`experiments.evaluate`): lm-eval's
conventions piece by piece, the scorer against the model's own logits, and
the program on a tiny model (the comparison with lm-eval's own numbers is
in test_evaluate_goldens.py)."""

import json
import os
import random
import types

import numpy as np
import pytest

from experiments.common import lm_scorer
from experiments.common import standard_errors
from experiments.common import zero_shot
from experiments.common.evaluation import load_model
from tests.experiments.binaries import assert_usage_error
from tests.experiments.binaries import run_binary

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
GPT2_DIR = os.environ.get(
    "KERASSEQ_GPT2_DIR", os.path.join(REPO, ".venv", "share", "gpt2")
)
needs_gpt2 = pytest.mark.skipif(
    not os.path.exists(os.path.join(GPT2_DIR, "encoder.json")),
    reason=f"GPT-2's BPE files not in {GPT2_DIR} (`make test` fetches them)",
)


def test_rolling_windows_follow_lm_evals_documented_example():
    # lm-eval's loglikelihood_rolling docstring: tokens 0..9, windows of 4,
    # the end-of-text token first
    eot = 99
    windows = lm_scorer.rolling_windows(range(10), eot, 4)
    inputs = [(c + p)[:-1][-4:] for c, p in windows]
    assert inputs == [[eot, 0, 1, 2], [3, 4, 5, 6], [5, 6, 7, 8]]
    assert [p for _, p in windows] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


@pytest.mark.parametrize("count", [1, 4, 5, 9, 23])
@pytest.mark.parametrize("max_length", [1, 4, 7])
def test_rolling_windows_score_each_token_once_with_its_predecessors(
    count, max_length
):
    tokens = list(range(100, 100 + count))
    windows = lm_scorer.rolling_windows(tokens, 0, max_length)
    scored = [t for _, p in windows for t in p]
    assert scored == tokens
    for context, predicted in windows:
        whole = context + predicted
        # what the model reads fits it, and the tokens before each scored
        # one are the document's (or the end-of-text token)
        assert len(whole) - 1 <= max_length
        first = tokens.index(predicted[0])
        expected = ([0] + tokens)[: first + 1][-len(context) :]
        assert context == expected


class _Characters:
    """A tokenizer of one token per character (id = code point)."""

    def encode(self, text):
        return [ord(c) for c in text]


def test_encode_pair_moves_trailing_spaces_to_the_continuation():
    context, continuation = lm_scorer.encode_pair(
        _Characters(), "Answer:  ", "yes", 0
    )
    assert context == [ord(c) for c in "Answer:"]
    assert continuation == [ord(c) for c in "  yes"]
    # no context: the end-of-text token stands for it
    assert lm_scorer.encode_pair(_Characters(), "", "ab", 7) == (
        [7],
        [97, 98],
    )


@needs_gpt2
def test_encode_pair_splits_the_whole_encoding_where_the_context_ends():
    from kerasseq.data.tokenizers import GPT2Tokenizer

    gpt2 = GPT2Tokenizer.from_directory(GPT2_DIR)
    context, continuation = lm_scorer.encode_pair(
        gpt2, "Question: is it?\nAnswer:", " positive", gpt2.end_id
    )
    whole = gpt2.encode("Question: is it?\nAnswer: positive")
    assert context + continuation == whole
    assert context == gpt2.encode("Question: is it?\nAnswer:")


def test_few_shot_examples_are_drawn_as_lm_eval_draws_them():
    train = [{"text": f"t{i}", "label": i % 2} for i in range(10)]
    rnd = random.Random(zero_shot.FEWSHOT_SEED)
    contexts = [
        zero_shot.fewshot_context(
            lambda d: d["text"], lambda d: "ab"[d["label"]], train, 3, rnd, doc
        )
        for doc in ({"text": "x"}, train[4], {"text": "y"})
    ]
    # one generator for the task; per document in order, k + 1 drawn, the
    # document itself dropped, the first k kept
    expected = random.Random(1234)
    for context, doc in zip(contexts, ({}, train[4], {}), strict=True):
        shots = [d for d in expected.sample(train, 4) if d != doc][:3]
        assert context == "".join(
            f"{d['text']} {'ab'[d['label']]}\n\n" for d in shots
        )
        assert doc == {} or f"{doc['text']} " not in context
    assert zero_shot.fewshot_context(str, str, train, 0, rnd) == ""
    with pytest.raises(ValueError, match="more than 10 training documents"):
        zero_shot.fewshot_context(str, str, train, 10, rnd)


def test_wikitext_detokenizer_and_articles():
    raw = (
        " \n = Alpha = \n \n The 1 @,@ 000 km @-@ long road , built "
        "( in 1900 ) is 5 @.@ 5 m wide . \n \n = = History = = \n \n "
        "It 's old . \n"
        " = Beta = \n \n Second article . \n"
    )
    pages = zero_shot.wikitext_documents(raw)
    assert len(pages) == 2
    assert pages[0].startswith(" = Alpha = ") and "= = History" in pages[0]
    assert pages[1].startswith(" = Beta = ")
    # every line kept, in order, but the blank one before the first title
    assert " \n" + "\n".join(pages) == raw
    text = zero_shot.detokenize_wikitext(pages[0])
    assert "1,000 km-long road, built (in 1900) is 5.5 m wide." in text
    assert "== History ==" in text and "It's old." in text


def test_acc_stderr_is_the_mean_standard_error():
    # acc of 4 documents, 1 0 1 1: mean 3/4, sample variance
    # (3 * (1/4)**2 + (3/4)**2) / 3 = 1/4, so stderr sqrt(1/4) / sqrt(4)
    metrics = standard_errors.add_stderrs(
        {"acc": 0.75}, {"acc": [1.0, 0.0, 1.0, 1.0]}, iters=1000
    )
    assert metrics == {"acc": 0.75, "acc_stderr": pytest.approx(0.25)}
    # lm-eval: N/A for one document, with no bootstrap, and for metrics
    # without an estimator
    assert standard_errors.add_stderrs({"acc": 1.0}, {"acc": [1.0]}, 1000) == {
        "acc": 1.0,
        "acc_stderr": "N/A",
    }
    assert standard_errors.add_stderrs(
        {"acc": 0.5, "word_perplexity": 3.0}, {"acc": [0.0, 1.0]}, 0
    ) == {
        "acc": 0.5,
        "acc_stderr": "N/A",
        "word_perplexity": 3.0,
        "word_perplexity_stderr": "N/A",
    }


def _lm_evals_bootstrap(metric, golds, predictions, iters):
    """lm-eval's bootstrap written out in plain Python: chunks of
    min(1000, iters) resamples, chunk i drawn by random.Random(i).choices;
    the sample standard deviation of the metric over the resamples."""
    import math

    def f1(pairs):
        tp = sum(g == 1 and p == 1 for g, p in pairs)
        wrong = sum((g == 1) != (p == 1) for g, p in pairs)
        return 2 * tp / (2 * tp + wrong) if tp + wrong else 0.0

    def mcc(pairs):
        tp = sum(g == 1 and p == 1 for g, p in pairs)
        tn = sum(g == 0 and p == 0 for g, p in pairs)
        fp = sum(g == 0 and p == 1 for g, p in pairs)
        fn = sum(g == 1 and p == 0 for g, p in pairs)
        denominator = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
        return (
            (tp * tn - fp * fn) / math.sqrt(denominator) if denominator else 0.0
        )

    statistic = {"f1": f1, "mcc": mcc}[metric]
    pairs = list(zip(golds, predictions, strict=True))
    chunk = min(1000, iters)
    values = []
    for seed in range(iters // chunk):
        rnd = random.Random(seed)
        for _ in range(chunk):
            values.append(statistic(rnd.choices(pairs, k=len(pairs))))
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return math.sqrt(variance)


@pytest.mark.parametrize("metric", ["f1", "mcc"])
@pytest.mark.parametrize("count, iters", [(23, 2500), (6, 300)])
def test_bootstrap_draws_the_resamples_lm_eval_draws(metric, count, iters):
    rng = np.random.default_rng(count)
    golds = rng.integers(0, 2, count)
    predictions = np.where(rng.random(count) < 0.7, golds, 1 - golds)
    ours = standard_errors.bootstrap_stderr(metric, golds, predictions, iters)
    expected = _lm_evals_bootstrap(metric, golds, predictions, iters)
    assert ours == pytest.approx(expected, rel=1e-12)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A kerasseq run directory holding a tiny GPT over GPT-2's vocabulary
    and the config.json naming its tokenizer."""
    if not os.path.exists(os.path.join(GPT2_DIR, "encoder.json")):
        pytest.skip("GPT-2's BPE files are missing")
    import kerasseq

    run_dir = tmp_path_factory.mktemp("run")
    model = kerasseq.models.build_model(
        "gpt",
        "causal_lm",
        "tiny",
        vocabulary_size=50257,
        max_sequence_length=32,
    )
    model.save(run_dir / "model.keras")
    record = {"task_args": {"tokenizer": "gpt2", "tokenizer_dir": GPT2_DIR}}
    (run_dir / "config.json").write_text(json.dumps(record))
    return run_dir


def test_scorer_equals_the_models_log_softmax(tiny_run):
    model, tokenizer = load_model(str(tiny_run))
    scorer = lm_scorer.Scorer(model, max_length=32, batch_size=2)
    rng = np.random.default_rng(0)
    requests = [
        (list(rng.integers(0, 50257, n)), list(rng.integers(0, 50257, m)))
        for n, m in [(5, 1), (3, 4), (40, 2), (1, 1), (30, 5)]
    ]
    got = scorer.loglikelihoods(requests)
    for (context, continuation), (ll, greedy) in zip(
        requests, got, strict=True
    ):
        # the reference: one request alone, unpadded, keeping the end
        whole = (context + continuation)[-33:]
        tokens = np.asarray([whole[:-1]], np.int32)
        logits = np.asarray(
            model({"token_ids": tokens, "padding_mask": tokens >= 0})
        )[0].astype(np.float64)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        span = range(len(whole) - 1 - len(continuation), len(whole) - 1)
        expected = sum(log_probs[t, whole[t + 1]] for t in span)
        assert ll == pytest.approx(expected, abs=1e-4)
        assert greedy == all(logits[t].argmax() == whole[t + 1] for t in span)


HF_FIXTURES = os.path.join(REPO, "tests", "fixtures", "hf")
NEOX_TOKENIZER = os.path.join(REPO, "tests", "fixtures", "neox_tokenizer")


def _pythia_like(directory, vocabulary_size=None):
    """The tiny GPT-NeoX checkpoint of tests/fixtures/hf/gpt_neox in
    `directory` (config.json and model.safetensors, no tokenizer), its
    embeddings grown to `vocabulary_size` rows."""
    from safetensors.numpy import load_file
    from safetensors.numpy import save_file

    source = os.path.join(HF_FIXTURES, "gpt_neox")
    weights = load_file(os.path.join(source, "model.safetensors"))
    with open(os.path.join(source, "config.json")) as f:
        config = json.load(f)
    if vocabulary_size is not None:
        rng = np.random.default_rng(0)
        for name in ("gpt_neox.embed_in.weight", "embed_out.weight"):
            extra = vocabulary_size - weights[name].shape[0]
            rows = rng.normal(0, 0.2, (extra, weights[name].shape[1]))
            weights[name] = np.concatenate(
                [weights[name], rows.astype(weights[name].dtype)]
            )
        config.update(vocab_size=vocabulary_size, eos_token_id=0)
    directory.mkdir()
    save_file(weights, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_load_model_reads_a_checkpoints_tokenizer_json(tmp_path):
    """A Pythia-like checkpoint that ships only tokenizer.json: its
    GPT-NeoX tokenizer (ids as Hugging Face's tokenizers gives them) with
    its own end-of-text id, 0."""
    with open(os.path.join(NEOX_TOKENIZER, "goldens.json")) as f:
        goldens = json.load(f)
    size = goldens["about"]["vocabulary_size"]
    directory = _pythia_like(tmp_path / "pythia", size)
    with open(os.path.join(NEOX_TOKENIZER, "tokenizer.json")) as f:
        (directory / "tokenizer.json").write_text(f.read())
    model, tokenizer = load_model(str(directory))
    assert tokenizer.end_id == goldens["end_id"] == 0
    assert tokenizer.encode_batch(goldens["texts"]) == goldens["ids"]
    # scored with the end-of-text id as the empty context's stand-in
    request = lm_scorer.encode_pair(tokenizer, "", "a\n\nb", tokenizer.end_id)
    assert request[0] == [0]
    scorer = lm_scorer.Scorer(model, max_length=16, batch_size=1)
    [(loglikelihood, _)] = scorer.loglikelihoods([request])
    assert np.isfinite(loglikelihood) and loglikelihood < 0


def test_checkpoint_without_a_tokenizer_is_a_usage_error(tmp_path):
    from experiments.common.evaluation import UsageError

    directory = _pythia_like(tmp_path / "bare")
    with pytest.raises(UsageError) as error:
        load_model(str(directory))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"--init_from={str(directory)!r}: ")
    for name in (
        "vocab.json + merges.txt",
        "tokenizer.json",
        "--tokenizer_dir",
    ):
        assert name in message


def _sst2(data_dir):
    folder = data_dir / "SST-2"
    folder.mkdir(parents=True)
    rows = {
        "train.tsv": [
            ("a fine , moving film .", 1),
            ("dull and far too long .", 0),
            ("the cast is wonderful .", 1),
            ("nothing works here .", 0),
        ],
        "dev.tsv": [("i loved it .", 1), ("a mess .", 0), ("warm .", 1)],
    }
    for name, pairs in rows.items():
        lines = ["sentence\tlabel"] + [f"{s}\t{y}" for s, y in pairs]
        (folder / name).write_text("\n".join(lines) + "\n")


def test_program_writes_results_samples_and_table(tiny_run, tmp_path):
    _sst2(tmp_path / "data")
    result = run_binary(
        "evaluate",
        f"--init_from={tiny_run}",
        "--task=sst2",
        "--num_fewshot=0,2",
        f"--data_dir={tmp_path / 'data'}",
        f"--workdir={tmp_path / 'out'}",
        "--batch_size=4",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    base = tmp_path / "out" / "evaluate"
    name = tiny_run.name
    results = json.loads((base / name / "results.json").read_text())
    assert set(results["tasks"]["sst2"]) == {"0-shot", "2-shot"}
    for k in (0, 2):
        path = base / name / f"{k}shot" / "samples_sst2.jsonl"
        samples = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(samples) == 3
        for s in samples:
            assert s["choices"] == [" negative", " positive"]
            assert len(s["loglikelihoods"]) == 2
            assert s["prediction"] == int(np.argmax(s["loglikelihoods"]))
            assert s["context"].endswith(
                f"{s['doc']['sentence']}\nQuestion: Is this sentence "
                "positive or negative?\nAnswer:"
            )
            assert s["context"].count("\nAnswer: ") == k
        correct = [float(s["prediction"] == s["target"]) for s in samples]
        metrics = results["tasks"]["sst2"][f"{k}-shot"]
        assert metrics["acc"] == np.mean(correct)
        assert metrics["acc_stderr"] == pytest.approx(
            np.std(correct, ddof=1) / np.sqrt(3)
        )
    # one row per metric, as lm-eval prints its table
    table = (base / "comparison.md").read_text().splitlines()
    assert "| model | task | shots | metric | value | ± |" in table
    for k in (0, 2):
        metrics = results["tasks"]["sst2"][f"{k}-shot"]
        row = (
            f"| {name} | sst2 | {k} | acc | {round(metrics['acc'], 4)} | "
            f"{round(metrics['acc_stderr'], 4)} |"
        )
        assert row in table, table


LM_EVAL_MODEL = os.path.join(REPO, "tests", "fixtures", "lm_eval", "model")
LOIRE = (
    "The Loire is the longest river in France. It rises in the Massif "
    "Central and flows 1,006 km to the Atlantic at Saint-Nazaire."
)


def _squad11(data_dir):
    """A tiny SQuAD v1.1 in the official layout: one dev question with a
    plain answer, one whose only answer ("The") normalises to "", one with
    such an answer among others."""

    def article(qas, context=LOIRE):
        for qa in qas:
            qa["answers"] = [
                {"text": t, "answer_start": context.index(t)}
                for t in qa["answers"]
            ]
        return {
            "title": "Loire",
            "paragraphs": [{"context": context, "qas": qas}],
        }

    dev = [
        {"id": "q1", "question": "How long is the Loire?",
         "answers": ["1,006 km", "1,006"]},
        {"id": "q2", "question": "Which word opens the text?",
         "answers": ["The"]},
        {"id": "q3", "question": "What is the longest river?",
         "answers": ["The", "Loire"]},
    ]  # fmt: skip
    train = [
        {"id": f"t{i}", "question": q, "answers": [a]}
        for i, (q, a) in enumerate(
            [
                ("Where does the Loire rise?", "Massif Central"),
                ("Where does it reach the Atlantic?", "Saint-Nazaire"),
                ("In which country is the Loire?", "France"),
            ]
        )
    ]
    data_dir.mkdir()
    for name, qas in (("dev-v1.1.json", dev), ("train-v1.1.json", train)):
        root = {"version": "1.1", "data": [article(qas)]}
        (data_dir / name).write_text(json.dumps(root))
    return data_dir


def _official_v11(predictions, answers):
    """Exact match and F1 as the official SQuAD v1.1 script computes them
    (written out here from its rules, independently of kerasseq)."""
    import collections
    import re
    import string

    def normalize(text):
        text = "".join(c for c in text.lower() if c not in string.punctuation)
        return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())

    def f1(prediction, gold):
        ours, theirs = normalize(prediction).split(), normalize(gold).split()
        same = sum(
            (collections.Counter(ours) & collections.Counter(theirs)).values()
        )
        if same == 0:
            return 0.0
        precision, recall = same / len(ours), same / len(theirs)
        return 2 * precision * recall / (precision + recall)

    exact = [
        max(float(normalize(predictions[q]) == normalize(g)) for g in golds)
        for q, golds in answers.items()
    ]
    f1s = [
        max(f1(predictions[q], g) for g in golds)
        for q, golds in answers.items()
    ]
    return 100 * np.mean(exact), 100 * np.mean(f1s)


def _squad_settings(data_dir):
    return types.SimpleNamespace(
        data_dir=str(data_dir), download="never", limit=None, max_gen_toks=4
    )


def test_squad11_scores_the_generations_by_the_official_v11_rules(tmp_path):
    k = 1
    from experiments.common import evaluation

    settings = _squad_settings(_squad11(tmp_path / "squad"))
    docs, train = evaluation.read_documents("squad", settings)
    assert [d["id"] for d in docs] == ["q1", "q2", "q3"]
    model, tokenizer = load_model(LM_EVAL_MODEL)
    scorer = lm_scorer.Scorer(model, evaluation.default_max_length(model))
    metrics, samples = evaluation.score(
        "squad", k, scorer, tokenizer, docs, train, settings
    )
    for sample in samples:
        # squadv2's prompt; k examples from train, each with its answer
        assert sample["context"].endswith(zero_shot.squad_prompt(sample["doc"]))
        assert sample["context"].count("\n\nAnswer: ") == k
    exact, f1 = _official_v11(
        {s["doc"]["id"]: s["prediction"] for s in samples},
        {s["doc"]["id"]: s["doc"]["answers"]["text"] for s in samples},
    )
    assert set(metrics) == {
        "exact_match",
        "exact_match_stderr",
        "f1",
        "f1_stderr",
        "task_note",
    }
    # as lm-eval's squadv2: aggregated over the set, no standard error
    assert metrics["exact_match_stderr"] == metrics["f1_stderr"] == "N/A"
    assert metrics["exact_match"] == pytest.approx(exact, abs=1e-9)
    assert metrics["f1"] == pytest.approx(f1, abs=1e-9)
    assert "no SQuAD 1.1 task" in metrics["task_note"]


class _FixedAnswers:
    """Stands in for a scorer: 'generates' a fixed answer per question."""

    def __init__(self, answers):
        self.answers = answers

    def generate_until(self, tokenizer, context, until, max_tokens, end_id):
        question = context.rsplit("Question: ", 1)[1].split("\n")[0]
        return self.answers[question]


def test_squad11_keeps_answers_that_normalise_to_nothing(tmp_path):
    """ "The" normalises to "": SQuAD 1.1's script scores against it (the
    empty prediction matches it exactly, with F1 0), 2.0's drops it."""
    from experiments.common import evaluation
    from experiments.common import squad_metrics as metrics_lib

    settings = _squad_settings(_squad11(tmp_path / "squad"))
    docs, train = evaluation.read_documents("squad", settings)
    scorer = _FixedAnswers(
        {
            "How long is the Loire?": " 1,006 km.",
            "Which word opens the text?": "",
            "What is the longest river?": " a",
        }
    )
    tokenizer = types.SimpleNamespace(end_id=0)
    metrics, samples = evaluation.score(
        "squad", 0, scorer, tokenizer, docs, train, settings
    )
    predictions = {s["doc"]["id"]: s["prediction"] for s in samples}
    answers = {d["id"]: d["answers"]["text"] for d in docs}
    exact, f1 = _official_v11(predictions, answers)
    assert (exact, f1) == pytest.approx((100.0, 100.0 / 3))
    assert (metrics["exact_match"], metrics["f1"]) == pytest.approx((exact, f1))
    v2 = metrics_lib.squad_scores(predictions, answers, version="2.0")
    assert (v2["exact_match"], v2["f1"]) == pytest.approx((200 / 3, 200 / 3))


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "--init_from names no model"),
        (("--init_from=x", "--task=sst3"), "Unknown --task sst3; valid: cola"),
        (("--init_from=x", "--num_fewshot=one"), "comma-separated integers"),
        (("--init_from=x", "--num_fewshot=-1"), "numbers >= 0, got [-1]"),
        (("--init_from=/nonexistent/ckpt",), "--init_from='/nonexistent"),
    ],
)
def test_usage_errors(args, message, tmp_path):
    result = run_binary(
        "evaluate",
        *args,
        f"--workdir={tmp_path}",
        env={"HF_HUB_OFFLINE": "1", "KERASSEQ_OFFLINE": "1"},
    )
    assert_usage_error(result, message)


def test_missing_data_offline_says_where_it_looked(tiny_run, tmp_path):
    result = run_binary(
        "evaluate",
        f"--init_from={tiny_run}",
        "--task=rte",
        f"--data_dir={tmp_path}",
        f"--workdir={tmp_path / 'out'}",
    )
    assert_usage_error(result, "No GLUE RTE")


def test_help_lists_every_flag_without_loading_tensorflow():
    from experiments.common import options
    from experiments.evaluate import EvaluateOptions
    from tests.experiments.test_options import _help

    text = _help("evaluate")
    assert "TENSORFLOW LOADED" not in text
    for field in options.settings(EvaluateOptions):
        assert f"--{options.flag_name(field)}:" in text, field.name
    assert "wikitext, squadv2, squad" in text  # the tasks, in --task's help
