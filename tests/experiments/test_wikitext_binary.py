import json
import math

import pytest

from experiments import wikitext as wikitext_binary
from experiments.common import train
from kerasseq.data import wikitext
from kerasseq.data.tokenizers import ByteTokenizer
from tests.data.test_wikitext import SAMPLE
from tests.data.test_wikitext import write_wikitext
from tests.experiments.binaries import assert_usage_error
from tests.experiments.binaries import failing_run_flags
from tests.experiments.binaries import run_binary
from tests.experiments.binaries import small_config


def _config(workdir, data_dir, models, **kw):
    task_args = wikitext_binary.WikitextOptions(
        seq_len=32, eval_stride=16, **kw.pop("task_options", {})
    )
    return small_config(
        "wikitext", "wikitext2", models, task_args, workdir, data_dir, **kw
    )


def run_models(tmp_path, models):
    """Trains `models` on a small WikiText fixture; checks what each run
    wrote; returns the config and results."""
    data_dir = tmp_path / "data"
    write_wikitext(data_dir, repeats=(6, 2, 2))
    config = _config(tmp_path / "runs", data_dir, models)
    results = train.run(config, wikitext_binary.make_task_data)
    tokens = len(wikitext.tokenize_stream(ByteTokenizer(), SAMPLE * 2))
    words = len((SAMPLE * 2).split())
    for name in models:
        path = tmp_path / "runs" / "wikitext2" / name / "results.json"
        saved = json.loads(path.read_text())
        for split in ("validation", "test"):
            scores = saved["eval"][split]
            # every token of the split scored once; perplexities from the
            # same total NLL
            assert scores["tokens"] == tokens
            assert scores["words"] == words
            nll = scores["nll"]
            assert math.isclose(
                scores["perplexity"], math.exp(nll / tokens), rel_tol=1e-6
            )
            assert math.isclose(
                scores["word_perplexity"], math.exp(nll / words), rel_tol=1e-6
            )
            # the convention is named with this run's window and stride
            convention = scores["perplexity_convention"]
            assert f"windows of {config.task_args.seq_len} tokens" in (
                convention
            )
            assert f"advancing by {config.task_args.eval_stride}" in (
                convention
            )
            # a model barely trained is near uniform over 258 byte ids
            assert 20 < scores["perplexity"] < 1000
        assert (path.parent / "model.keras").exists()
    return config, results


# every causal model: test_nlp_every_model.py (`large`)
def test_end_to_end_with_samples(tmp_path):
    config, _ = run_models(tmp_path, ("gpt",))
    table = (tmp_path / "runs" / "wikitext2" / "comparison.md").read_text()
    assert "validation perplexity" in table and "gpt" in table
    samples = wikitext_binary.sample(config, " = Valkyria", 5)
    for name in ("gpt",):
        # greedy: five byte tokens, which decode to at most five characters
        assert 0 < len(samples[name]) <= 5
        written = (
            tmp_path / "runs" / "wikitext2" / name / "samples.txt"
        ).read_text()
        assert written.startswith(" = Valkyria" + samples[name])


def test_token_limits_score_the_words_of_the_kept_text(tmp_path):
    write_wikitext(tmp_path / "data", repeats=(6, 2, 2))
    config = _config(
        tmp_path / "runs",
        tmp_path / "data",
        ("lstm",),
        task_options={"num_eval_tokens": 50},
    )
    data = wikitext_binary.make_task_data(config)
    scores = data.score(_Uniform(), "test", None)
    kept = ByteTokenizer().decode(
        wikitext.tokenize_stream(ByteTokenizer(), SAMPLE)[:50]
    )
    assert scores["tokens"] == 50
    assert scores["words"] == len(kept.split())
    # uniform over the 258 byte ids
    assert math.isclose(scores["perplexity"], 258, rel_tol=1e-5)


class _Uniform:
    def __call__(self, inputs, training=False):
        import keras

        ids = inputs["token_ids"]
        return keras.ops.zeros(ids.shape + (258,))


def test_bad_options():
    with pytest.raises(ValueError, match="cannot be causal LMs. Causal"):
        wikitext_binary.check_causal(("gpt", "transformer"))
    with pytest.raises(ValueError, match="exceeds --seq_len=32"):
        wikitext_binary.WikitextOptions(seq_len=32, eval_stride=64)
    with pytest.raises(ValueError, match="--seq_len must be an integer >= 2"):
        wikitext_binary.WikitextOptions(seq_len=1)
    with pytest.raises(ValueError, match="valid: bytes, gpt2"):
        wikitext_binary.WikitextOptions(tokenizer="words")


# through the program: each exits with the message and no traceback, before
# anything trains
@pytest.mark.parametrize(
    "args, match",
    [
        (["--model=gpt,transformer"], "cannot be causal LMs"),
        (["--data_dir=EMPTY", "--tokenizer=gpt2", "--tokenizer_dir=EMPTY"],
         "expected vocab.json + merges.txt, encoder.json + vocab.bpe or "
         "tokenizer.json"),
        (["--data_dir=EMPTY"], "wiki.train.raw"),
    ],
)  # fmt: skip
def test_bad_input_is_a_usage_error(tmp_path, args, match):
    (tmp_path / "empty").mkdir()
    args = [a.replace("EMPTY", str(tmp_path / "empty")) for a in args]
    common = [*failing_run_flags(tmp_path / "runs"), "--batch_size=2"]
    assert_usage_error(run_binary("wikitext", *common, *args), match)
    assert not (tmp_path / "runs" / "wikitext2" / "gpt").exists()
