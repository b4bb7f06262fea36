"""`python -m experiments.benchmark lm`: kerasseq's 0-shot SST-2 scoring and
generation timed against transformers with the same weights (the peer runs
only where a Python with torch is named: `KERASSEQ_PEER_PYTHON`)."""

import json
import os
import shutil

import pytest

from tests.experiments.binaries import ROOT
from tests.experiments.test_benchmark import _benchmark

GLUE = os.path.join(ROOT, "tests", "fixtures", "lm_eval", "data", "glue")
BPE = os.path.join(ROOT, ".venv", "share", "gpt2")
TINY = (
    "--lm_size=tiny",
    f"--data_dir={GLUE}",
    f"--tokenizer_dir={BPE}",
    "--prompt_len=16,70",
    "--generate_batch=1,2",
    "--new_tokens=3",
    "--lm_repeats=1",
)

needs_bpe = pytest.mark.skipif(
    not os.path.isdir(BPE), reason="GPT-2's BPE files (make test fetches them)"
)


def _gpt2_parameters(vocabulary, positions, width, layers):
    """GPT-2's parameter count: tied token table, position table, per
    block two norms, attention (qkv + output) and a 4x MLP, final norm."""
    block = 2 * 2 * width + (3 * width + width) * (width + 1)
    block += 4 * width * (width + 1) + width * (4 * width + 1)
    return (vocabulary + positions) * width + layers * block + 2 * width


def _results(directory):
    with open(os.path.join(directory, "lm_tensorflow.json")) as f:
        return json.load(f)


@needs_bpe
def test_lm_benchmark_times_kerasseq_and_says_why_the_peer_is_missing(
    tmp_path,
):
    result = _benchmark(
        *TINY,
        "--models=gpt2,mamba",
        "--peer_python=/nonexistent/python",
        f"--output_dir={tmp_path}",
        command="lm",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "transformers: skipped: --peer_python='/nonexistent/python'" in (
        result.stdout
    )
    saved = json.loads((tmp_path / "lm_tensorflow.json").read_text())
    gpt2, mamba = saved["results"]
    assert "error" not in gpt2 and "error" not in mamba, saved["results"]
    # the model built from GPT-2's configuration at the tiny size
    assert gpt2["parameters"] == _gpt2_parameters(50257, 2048, 64, 2)
    assert gpt2["docs_per_s"] > 0
    for row in gpt2, mamba:
        # every (batch, prompt length) pair, in flag order
        settings = [
            (g["batch_size"], g["prompt_len"]) for g in row["generation"]
        ]
        assert settings == [(1, 16), (1, 70), (2, 16), (2, 70)]
        for g in row["generation"]:
            assert g["tokens_per_s"] > 0 and g["first_token_s"] > 0
            # none where the tiny model's later tokens took no measurable
            # time after the first
            assert g["decode_tokens_per_s"] is None or (
                g["decode_tokens_per_s"] > 0
            )
    # GPT-2 carries keys and values for 2 layers x 64 features per
    # sequence at the cache's bucket (64 slots for 16 + 3 tokens, 128 for
    # 70 + 3), float32, and each layer's int32 position; Mamba its
    # convolution window (3 x 128) and its 128 x 16 state per layer and
    # sequence, whatever the prompt
    kv = [(g["batch_size"], g["state_bytes"]) for g in gpt2["generation"]]
    assert kv == [
        (batch, batch * 2 * 2 * slots * 64 * 4 + 2 * 4)
        for batch, slots in ((1, 64), (1, 128), (2, 64), (2, 128))
    ]
    recurrent = [
        (g["batch_size"], g["state_bytes"]) for g in mamba["generation"]
    ]
    assert recurrent == [
        (batch, batch * 2 * (3 * 128 + 128 * 16) * 4) for batch in (1, 1, 2, 2)
    ]
    environment = saved["environment"]
    # both choices of each of the fixture's 8 validation documents
    assert environment["sst2_documents"] == 8
    assert environment["score_requests"] == 16
    with open(tmp_path / "lm_requests.json") as f:
        requests = json.load(f)
    assert len(requests) == 16
    # the continuations are " negative" / " positive" (one token each)
    assert {len(continuation) for _, continuation in requests} == {1}
    written = (tmp_path / "lm_tensorflow.md").read_text()
    assert "| gpt2 | kerasseq (tensorflow) | 2 | 70 |" in written


@pytest.mark.parametrize(
    "args,message",
    [
        (["--lm_size=huge"], "--lm_size='huge': allowed: released, tiny"),
        (["--models=lstm"], "--models='lstm': unknown ['lstm']"),
        (["--new_tokens=1"], "need at least 2 new tokens"),
        (["--prompt_len=16,x"], "--prompt_len='16,x': expected a comma list"),
        (["--generate_batch=0"], "--generate_batch='0': expected a comma list"),
    ],
)
def test_lm_benchmark_rejects_bad_flags_in_one_line(tmp_path, args, message):
    result = _benchmark(
        *TINY,
        "--models=gpt2",
        *args,
        f"--output_dir={tmp_path / 'out'}",
        command="lm",
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


PEER = os.environ.get("KERASSEQ_PEER_PYTHON")


@pytest.mark.large  # needs a Python with torch and transformers
@pytest.mark.skipif(
    not PEER or not shutil.which(PEER),
    reason="KERASSEQ_PEER_PYTHON names no Python with torch + transformers",
)
@needs_bpe
def test_lm_benchmark_peer_scores_and_generates_as_kerasseq(tmp_path):
    result = _benchmark(
        *TINY,
        "--models=gpt2,mamba,pythia",
        f"--peer_python={PEER}",
        f"--output_dir={tmp_path}",
        command="lm",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _results(tmp_path)["results"]
    assert [(r["model"], r["framework"].split()[0]) for r in rows] == [
        (name, framework)
        for name in ("gpt2", "mamba", "pythia")
        for framework in ("kerasseq", "transformers")
    ]
    for ours, theirs in zip(rows[::2], rows[1::2], strict=True):
        # one checkpoint, written by the peer, loaded by both
        assert ours["parameters"] == theirs["parameters"]
        assert theirs["max_score_difference"] < 1e-4
        for generation in theirs["generation"]:
            assert generation["same_greedy_tokens"] == 3
        # the recurrent model's state is the same size after either prompt
        if ours["model"] == "mamba":
            per_sequence = {
                g["state_bytes"] / g["batch_size"] for g in ours["generation"]
            }
            assert len(per_sequence) == 1
