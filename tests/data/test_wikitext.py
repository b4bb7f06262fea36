import math
import os
import zipfile

import keras
import numpy as np
import pytest

from kerasseq.data import wikitext
from kerasseq.data.errors import DataNotFoundError
from kerasseq.data.tokenizers import ByteTokenizer
from kerasseq.models import build_model
from tests import testing

# a few lines in WikiText's raw style: headings, blank lines, " @-@ "
SAMPLE = (
    " \n = Valkyria Chronicles III = \n \n"
    " Senjō no Valkyria 3 : Unrecorded Chronicles is a tactical role @-@ "
    "playing video game . \n"
    " The game began development in 2010 , carrying over a large portion "
    "of the work done on Valkyria Chronicles II . \n \n"
    " = = Gameplay = = \n \n"
)


def write_wikitext(directory, text=SAMPLE, repeats=(40, 8, 8)):
    """Writes `wiki.{train,valid,test}.raw` (the text repeated)."""
    os.makedirs(directory, exist_ok=True)
    for split, count in zip(wikitext.SPLIT_FILES, repeats, strict=True):
        path = os.path.join(directory, wikitext.SPLIT_FILES[split])
        with open(path, "w", encoding="utf-8") as f:
            f.write(text * count)


def test_reads_files_folder_and_archive(tmp_path):
    write_wikitext(tmp_path / "plain")
    write_wikitext(tmp_path / "nested" / wikitext.ARCHIVE_FOLDER)
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    with zipfile.ZipFile(zipped / wikitext.ARCHIVE, "w") as z:
        for name in wikitext.SPLIT_FILES.values():
            body = (tmp_path / "plain" / name).read_text(encoding="utf-8")
            z.writestr(f"{wikitext.ARCHIVE_FOLDER}/{name}", body)
    for directory in ("plain", "nested", "zipped"):
        text = wikitext.read_split(str(tmp_path / directory), "validation")
        assert text == SAMPLE * 8


def test_missing_files_name_every_place(tmp_path):
    with pytest.raises(DataNotFoundError) as error:
        wikitext.read_split(str(tmp_path), "test")
    message = str(error.value)
    assert os.path.join(str(tmp_path), "wiki.test.raw") in message
    assert "wikitext-2-raw/wiki.test.raw" in message
    assert "wikitext-2-raw-v1.zip" in message
    with pytest.raises(DataNotFoundError, match=r"no --data_dir.*--download"):
        wikitext.read_split(None, "train", download="never")
    with pytest.raises(ValueError, match="Valid splits: train, validation"):
        wikitext.read_split(str(tmp_path), "valid")


def test_stream_decodes_to_the_text():
    tokenizer = ByteTokenizer()
    stream = wikitext.tokenize_stream(tokenizer, SAMPLE)
    assert stream.dtype == np.int32
    assert tokenizer.decode(stream) == SAMPLE


def test_training_rows_are_next_token_pairs():
    stream = np.arange(23, dtype=np.int32)
    inputs, labels = wikitext.training_rows(stream, 5)
    assert inputs["token_ids"].shape == (4, 5)
    np.testing.assert_array_equal(inputs["token_ids"][1], [5, 6, 7, 8, 9])
    np.testing.assert_array_equal(labels[1], [6, 7, 8, 9, 10])
    assert inputs["padding_mask"].all()
    with pytest.raises(ValueError, match="makes no row"):
        wikitext.training_rows(stream[:5], 5)


@pytest.mark.parametrize(
    "length, max_length, stride",
    [(1, 4, 2), (3, 8, 3), (8, 8, 8), (9, 8, 8), (50, 8, 3), (50, 8, 1),
     (37, 16, 16), (100, 16, 5)],
)  # fmt: skip
def test_windows_score_every_token_once_with_context(
    length, max_length, stride
):
    stream = np.arange(1000, 1000 + length, dtype=np.int32)
    windows = wikitext.sliding_windows(stream, max_length, stride, 7)
    scored = []
    for k in range(len(windows.token_ids)):
        ids, labels = windows.token_ids[k], windows.labels[k]
        mask, weights = windows.padding_mask[k], windows.weights[k]
        real = int(mask.sum())
        # each row is a piece of the prefixed stream, its labels shifted
        prefixed = np.concatenate([[7], stream])
        begin = int(np.flatnonzero(prefixed == ids[0])[0])
        np.testing.assert_array_equal(ids[:real], prefixed[begin:][:real])
        np.testing.assert_array_equal(
            labels[:real], prefixed[begin + 1 :][:real]
        )
        assert not weights[~mask].any()
        for position in np.flatnonzero(weights):
            # a scored token sees the window's tokens before it: all of the
            # stream before it, or at least max_length - stride of them
            context = position + 1
            index = begin + position  # label is stream[index]
            assert context >= min(index + 1, max_length - stride + 1)
            scored.append(index)
    assert sorted(scored) == list(range(length))


def test_window_arguments():
    with pytest.raises(ValueError, match="stride must be in"):
        wikitext.sliding_windows(np.arange(5), 4, 5, 0)
    with pytest.raises(ValueError, match="empty"):
        wikitext.sliding_windows(np.arange(0), 4, 2, 0)


class _UniformLM:
    """Logits 0 everywhere: every next token has probability 1/V."""

    def __init__(self, vocabulary_size):
        self.vocabulary_size = vocabulary_size

    def __call__(self, inputs, training=False):
        ids = inputs["token_ids"]
        return keras.ops.zeros(ids.shape + (self.vocabulary_size,))


def test_a_keras_model_is_scored_in_one_compiled_program():
    # on JAX compiling needs the model's variables passed in; without them
    # the model ran op by op, 24x slower on a tiny GPT
    model = build_model(
        "gpt", "causal_lm", "tiny", vocabulary_size=11, max_sequence_length=8
    )
    seen, restore = testing.recording_traced_calls(model)
    windows = wikitext.sliding_windows(np.arange(40) % 11, 8, 4, 0)
    nll, _ = wikitext.score_windows(model, windows, 4)
    assert seen and all(seen), seen
    restore()  # the same total from the model run op by op
    expected = 0.0
    for k in range(len(windows.token_ids)):
        inputs = {
            "token_ids": windows.token_ids[k : k + 1],
            "padding_mask": windows.padding_mask[k : k + 1],
        }
        nll_k = keras.ops.sparse_categorical_crossentropy(
            windows.labels[k : k + 1], model(inputs), from_logits=True
        )
        nll_k = keras.ops.convert_to_numpy(nll_k) * windows.weights[k : k + 1]
        expected += float(nll_k.sum())
    np.testing.assert_allclose(nll, expected, rtol=1e-5)


def test_uniform_model_has_the_vocabulary_as_perplexity():
    # NLL log(V) per token, so perplexity exp(mean NLL) = V exactly
    stream = np.arange(61, dtype=np.int32) % 11
    windows = wikitext.sliding_windows(stream, 8, 3, 0)
    nll, tokens = wikitext.score_windows(_UniformLM(11), windows, 4)
    assert tokens == 61
    np.testing.assert_allclose(nll, 61 * math.log(11), rtol=1e-5)
    np.testing.assert_allclose(math.exp(nll / tokens), 11, rtol=1e-5)


def _full_nll(model, tokens):
    """NLL of tokens[1:] given tokens[:-1] in one forward pass."""
    ids = tokens[None, :-1]
    logits = keras.ops.convert_to_numpy(
        model({"token_ids": ids, "padding_mask": np.ones_like(ids, bool)})
    )[0]
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -log_probs[np.arange(len(tokens) - 1), tokens[1:]].sum()


def test_windowed_nll_equals_whole_passes_of_a_real_model():
    model = build_model(
        "gpt", "causal_lm", "tiny", vocabulary_size=13, max_sequence_length=8
    )
    rng = np.random.default_rng(0)
    # shorter than a window: one window scores the whole prefixed stream
    stream = rng.integers(1, 13, 6).astype(np.int32)
    nll, tokens = wikitext.score_windows(
        model, wikitext.sliding_windows(stream, 8, 4, 0), 2
    )
    expected = _full_nll(model, np.concatenate([[0], stream]))
    assert tokens == 6
    np.testing.assert_allclose(nll, expected, rtol=1e-4)
    # stride = window: disjoint windows, each one whole pass
    stream = rng.integers(1, 13, 24).astype(np.int32)
    nll, tokens = wikitext.score_windows(
        model, wikitext.sliding_windows(stream, 8, 8, 0), 3
    )
    prefixed = np.concatenate([[0], stream])
    expected = sum(
        _full_nll(model, prefixed[begin : begin + 9])
        for begin in range(0, 24, 8)
    )
    assert tokens == 24
    np.testing.assert_allclose(nll, expected, rtol=1e-4)
