"""Where each binary's data comes from when no --data_dir is given:
TensorFlow Datasets (mocked), kerasseq's own downloads (served on
127.0.0.1), the generators, and the offline failure of each."""

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import tarfile
import time
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import app

from experiments import glue as glue_binary
from experiments import lra as lra_binary
from experiments import pixels as pixels_binary
from experiments import squad as squad_binary
from experiments import textcls as textcls_binary
from experiments import wikitext as wikitext_binary
from experiments.common import train
from kerasseq.data import download
from kerasseq.data import listops
from kerasseq.data import lra
from kerasseq.data import wikitext
from tests.data.test_lra import write_aan
from tests.data.test_wikitext import SAMPLE
from tests.experiments.binaries import assert_usage_error
from tests.experiments.binaries import failing_run_flags
from tests.experiments.binaries import run_binary
from tests.experiments.binaries import small_config
from tests.loopback import serving


def _glue(workdir, **kw):
    args = glue_binary.GlueOptions(max_length=24)
    return small_config("glue", "sst2", ("gpt",), args, workdir, None, **kw)


def _squad(workdir, **kw):
    args = squad_binary.SquadOptions(
        max_length=48, doc_stride=16, max_query_length=12
    )
    task = squad_binary.task_name("1.1")
    return small_config("squad", task, ("gpt",), args, workdir, None, **kw)


def _pixels(workdir, task, **kw):
    args = pixels_binary.PixelsOptions(validation_size=2)
    return small_config("pixels", task, ("lru",), args, workdir, None, **kw)


def _lra(workdir, task, models=("lstm",), max_length=None, **kw):
    options = kw.pop("task_options", {})
    args = lra_binary.LraOptions(max_length=max_length, **options)
    data_dir = kw.pop("data_dir", None)
    return small_config("lra", task, models, args, workdir, data_dir, **kw)


def _wikitext(workdir, **kw):
    args = wikitext_binary.WikitextOptions(seq_len=32, eval_stride=16)
    return small_config(
        "wikitext", "wikitext2", ("gpt",), args, workdir, None, **kw
    )


def _textcls(workdir, **kw):
    args = textcls_binary.TextclsOptions(max_length=16)
    return small_config("textcls", "folder", ("gpt",), args, workdir, None)


# === offline: every binary without data says so at once ===


def test_the_headline_command_fails_fast_offline(tmp_path):
    """`python -m experiments.glue --model=mamba` as a new user types it,
    on this machine, which has no network: the real probe, no stand-ins."""
    if download.unreachable(["https://dl.fbaipublicfiles.com/"]) is None:
        pytest.skip("this machine reaches dl.fbaipublicfiles.com")
    start = time.perf_counter()
    result = run_binary(
        "glue",
        "--model=mamba",
        cwd=tmp_path,
        env={download.OFFLINE_ENV: ""},
    )
    elapsed = time.perf_counter() - start
    print(f"offline `experiments.glue --model=mamba`: {elapsed:.1f} s")
    assert_usage_error(result, "No GLUE SST-2 train data: no --data_dir")
    for part in (
        "`tfds build glue/sst2`",
        "The network is unreachable (",
        "dl.fbaipublicfiles.com: ",
        "so TensorFlow Datasets could not download 'glue/sst2' into "
        + os.environ["TFDS_DATA_DIR"],
    ):
        assert part in result.stderr, result.stderr[-1500:]
    # TFDS's own retries (minutes) were never reached
    assert elapsed < 60
    assert not (tmp_path / "runs" / "sst2").exists()


# (binary's config, what its message says): KERASSEQ_OFFLINE is set for
# the tests, so each is told without touching the network
NO_DATA = {
    "glue": (_glue, ("'glue/sst2'", "KERASSEQ_OFFLINE is set")),
    "squad": (_squad, ("train-v1.1.json", "'squad/v1.1'", "unreachable")),
    "smnist": (
        lambda w: _pixels(w, "smnist"),
        ("train-images-idx3-ubyte", "'mnist'", "unreachable"),
    ),
    "scifar": (
        lambda w: _pixels(w, "scifar", download="never"),
        ("data_batch_1", "'cifar10'", "Nothing was downloaded"),
    ),
    "wikitext": (
        _wikitext,
        ("wiki.train.raw", "WikiText-2 (raw) is not in", "unreachable"),
    ),
    "lra_text": (
        lambda w: _lra(w, "text", max_length=40),
        ("aclImdb/train/pos", "'imdb_reviews'", "unreachable"),
    ),
    "lra_image": (
        lambda w: _lra(w, "image"),
        ("data_batch_1", "'cifar10'", "unreachable"),
    ),
    "lra_retrieval": (
        lambda w: _lra(w, "retrieval", max_length=24),
        ("new_aan_pairs.train.tsv", "--download=lra_release"),
    ),
    "lra_listops_never": (
        lambda w: _lra(w, "listops", max_length=48, download="never"),
        ("basic_train.tsv", "--generate"),
    ),
    "textcls": (_textcls, ("needs --data_dir", "no data to download")),
}


@pytest.mark.parametrize("name", list(NO_DATA))
def test_every_binary_without_data_is_a_usage_error(tmp_path, name):
    make_config, parts = NO_DATA[name]
    config = make_config(tmp_path / "runs")
    binary = {
        "glue": glue_binary,
        "squad": squad_binary,
        "wikitext": wikitext_binary,
        "textcls": textcls_binary,
    }.get(name.split("_")[0], lra_binary)
    if config.family == "pixels":
        binary = pixels_binary
    start = time.perf_counter()
    with pytest.raises(app.UsageError) as error:
        train.run_program(config, binary.make_task_data)
    assert time.perf_counter() - start < 10
    for part in parts:
        assert part in str(error.value), str(error.value)
    assert not os.path.exists(config.run_dir("gpt"))


# === TensorFlow Datasets, end to end through the binaries ===


@contextlib.contextmanager
def online_tfds(monkeypatch, **mock_options):
    """TFDS mocked (nothing prepared; random examples of each dataset's
    real features, or `as_dataset_fn`'s) and the network taken as
    reachable; yields the datasets TFDS was asked to download and prepare,
    as `name/config`."""
    prepared = []
    monkeypatch.setattr(download, "unreachable", lambda urls: None)
    with tfds.testing.mock_data(num_examples=12, **mock_options):
        mocked = tfds.core.DatasetBuilder.download_and_prepare

        def record(builder, *args, **kwargs):
            prepared.append(builder.info.full_name.rsplit("/", 1)[0])
            return mocked(builder, *args, **kwargs)

        monkeypatch.setattr(
            tfds.core.DatasetBuilder, "download_and_prepare", record
        )
        yield prepared


def _first_batch(data):
    inputs, labels = next(iter(data.make_train()))[:2]
    return {k: tuple(v.shape) for k, v in inputs.items()}, tuple(labels.shape)


def _results(config, name):
    with open(os.path.join(config.run_dir(name), "results.json")) as f:
        return json.load(f)


# training on what TFDS gives runs in test_notebook.py (GLUE SST-2 through
# the notebook's command); here each builder goes through its binary's
# data function


def test_glue_downloads_through_tfds(tmp_path, monkeypatch):
    config = _glue(tmp_path / "runs")
    with online_tfds(monkeypatch) as prepared:
        data = glue_binary.make_task_data(config)
    # asked once per split: the mock prepares nothing
    assert prepared == ["glue/sst2", "glue/sst2"]
    assert data.report["train"]["examples"] == 12
    assert data.report["validation"]["examples"] == 12
    inputs, labels = _first_batch(data)
    assert inputs["token_ids"] == (4, 24) and labels == (4,)


def _squad_split(builder, split, **kwargs):
    """What TFDS's SQuAD gives, with answers that are in their contexts."""
    contexts = [f"Bridge {i} was built in {1900 + i} by us." for i in range(12)]
    answers = [str(1900 + i) for i in range(12)]
    return tf.data.Dataset.from_tensor_slices(
        {
            "id": [f"{split}{i}" for i in range(12)],
            "title": ["Bridges"] * 12,
            "context": contexts,
            "question": [f"When was bridge {i} built?" for i in range(12)],
            "answers": {
                "text": [[a] for a in answers],
                "answer_start": np.array(
                    [
                        [c.index(a)]
                        for c, a in zip(contexts, answers, strict=True)
                    ],
                    np.int32,
                ),
            },
        }
    )


def test_squad_downloads_through_tfds(tmp_path, monkeypatch):
    config = _squad(tmp_path / "runs")
    with online_tfds(monkeypatch, as_dataset_fn=_squad_split) as prepared:
        data = squad_binary.make_task_data(config)
    assert prepared == ["squad/v1.1", "squad/v1.1"]
    assert data.report["train"]["used_examples"] == 12
    assert data.report["validation"]["used_examples"] == 12
    inputs, labels = _first_batch(data)
    assert inputs["token_ids"] == (4, 48) and labels == (4, 2)


@pytest.mark.parametrize(
    "task, dataset, inputs",
    [
        ("smnist", "mnist", {"features": (4, 784, 1)}),
        ("lra_text", "imdb_reviews/plain_text", {"token_ids": (4, 40)}),
        ("lra_image", "cifar10", {"token_ids": (4, 1024)}),
    ],
)
def test_images_and_reviews_download_through_tfds(
    tmp_path, monkeypatch, task, dataset, inputs
):
    if task == "smnist":
        config, binary = _pixels(tmp_path / "runs", task), pixels_binary
    else:
        task = task[len("lra_") :]
        config = _lra(
            tmp_path / "runs",
            task,
            max_length=40 if task == "text" else None,
            task_options={"validation_size": 2},
        )
        binary = lra_binary
    with online_tfds(monkeypatch, max_value=5) as prepared:
        data = binary.make_task_data(config)
    assert set(prepared) == {dataset}
    shapes, labels = _first_batch(data)
    assert {k: shapes[k] for k in inputs} == inputs and labels == (4,)
    assert set(data.evals) == {"val", "test"} or set(data.evals) == {
        "validation",
        "test",
    }


# === kerasseq's own downloads: WikiText-2 from a server on 127.0.0.1 ===


def _wikitext_zip(repeats=(6, 2, 2)):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, count in zip(
            wikitext.SPLIT_FILES.values(), repeats, strict=True
        ):
            z.writestr(f"{wikitext.ARCHIVE_FOLDER}/{name}", SAMPLE * count)
    return buffer.getvalue()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty kerasseq cache, the network allowed (to 127.0.0.1)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(download.CACHE_ENV, str(folder))
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)
    return folder


def test_wikitext_downloads_caches_and_trains(tmp_path, monkeypatch, cache):
    body = _wikitext_zip()
    # the served archive stands in for the official one: its own checksum
    monkeypatch.setattr(
        wikitext,
        "SOURCE",
        dataclasses.replace(
            wikitext.SOURCE,
            sha256=hashlib.sha256(body).hexdigest(),
            size=len(body),
        ),
    )
    config = _wikitext(tmp_path / "runs")
    with serving({wikitext.ARCHIVE: body}) as server:
        monkeypatch.setenv(download.MIRROR_ENV, server.url)
        first = train.run(config, wikitext_binary.make_task_data)["gpt"]
        # three splits, one download
        assert server.requests == [(wikitext.ARCHIVE, None)]
    assert (cache / wikitext.ARCHIVE).read_bytes() == body
    tokens = len(SAMPLE.encode()) * 2
    assert first["eval"]["test"]["tokens"] == tokens
    assert 20 < first["eval"]["test"]["perplexity"] < 1000
    # the server is gone: the cache serves the next run's data
    data = wikitext_binary.make_task_data(config)
    assert first["data"] == data.report


def test_wikitext_refuses_an_archive_that_is_not_the_official_one(
    tmp_path, cache
):
    """Through the program: a mirror that serves another file of the
    official size."""
    other = bytes(wikitext.SOURCE.size)
    with serving({wikitext.ARCHIVE: other}) as server:
        result = run_binary(
            "wikitext",
            *failing_run_flags(tmp_path / "runs"),
            env={
                download.OFFLINE_ENV: "",
                download.MIRROR_ENV: server.url,
                download.CACHE_ENV: str(cache),
            },
        )
    assert_usage_error(result, f"{cache / wikitext.ARCHIVE}.part: SHA-256 ")
    assert wikitext.SOURCE.sha256 in result.stderr
    assert "It was deleted; nothing was kept" in result.stderr
    assert sorted(os.listdir(cache)) == [wikitext.ARCHIVE + ".lock"]
    assert not (tmp_path / "runs" / "wikitext2" / "gpt").exists()


# === LRA: generators without data, the release archive when asked ===


@pytest.mark.parametrize(
    "task, generate, data_dir, download_mode, expected",
    [
        ("listops", False, None, "auto", True),
        ("pathfinder", False, None, "auto", True),
        ("listops", False, "/data", "auto", False),
        ("listops", True, "/data", "auto", True),
        ("listops", False, None, "never", False),
        ("listops", True, None, "never", True),
        ("listops", False, None, "lra_release", False),
        ("text", False, None, "auto", False),
        ("text", True, None, "auto", True),  # for LraOptions to refuse
    ],
)
def test_which_runs_draw_their_data(
    task, generate, data_dir, download_mode, expected
):
    assert (
        lra_binary.wants_generator(task, generate, data_dir, download_mode)
        == expected
    )


def test_conflicting_sources_are_refused(tmp_path):
    with pytest.raises(ValueError, match="give one of them"):
        lra_binary.wants_generator("listops", True, None, "lra_release")
    with pytest.raises(ValueError, match="--data_dir=.* names local files"):
        _lra(
            tmp_path,
            "retrieval",
            download="lra_release",
            data_dir=str(tmp_path),
        )
    with pytest.raises(ValueError, match="valid: auto, never."):
        _glue(tmp_path, download="lra_release")


def _release_archive(directory):
    """A small `lra_release.gz` in the release's nested layout."""
    write_aan(os.path.join(directory, "aan"), rows_per_split=12)
    splits = listops.generate(
        {"train": 24, "val": 8, "test": 8}, 0, 4, 4, 3, 48
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in lra.RETRIEVAL_FILES.values():
            archive.add(
                os.path.join(directory, "aan", name),
                f"lra_release/lra_release/tsv_data/{name}",
            )
        for split, examples in splits.items():
            path = os.path.join(directory, listops.SPLIT_FILES[split])
            listops.write_tsv(path, examples)
            archive.add(
                path, f"lra_release/listops-1000/{listops.SPLIT_FILES[split]}"
            )
    return buffer.getvalue()


def test_lra_release_is_fetched_once_and_read_per_task(
    tmp_path, monkeypatch, cache, capfd
):
    body = _release_archive(str(tmp_path / "src"))
    configs = {
        task: _lra(
            tmp_path / "runs",
            task,
            max_length=length,
            download="lra_release",
        )
        for task, length in (("retrieval", 24), ("listops", 48))
    }
    with serving({lra.RELEASE.filename: body}) as server:
        monkeypatch.setenv(download.MIRROR_ENV, server.url)
        data = {t: lra_binary.make_task_data(c) for t, c in configs.items()}
        assert server.requests == [(lra.RELEASE.filename, None)]
    assert "about 7.7 GB" in capfd.readouterr().err
    extracted = cache / "lra_release"
    assert (extracted / "tsv_data" / "new_aan_pairs.test.tsv").exists()
    assert (extracted / "listops-1000" / "basic_val.tsv").exists()
    # the release's rows, not generated ones
    assert sum(len(list(d)) for d in data["retrieval"].evals.values()) == 6
    inputs, labels = _first_batch(data["retrieval"])
    assert inputs["token_ids_2"] == (4, 24) and labels == (4,)
    assert sum(len(list(d)) for d in data["listops"].evals.values()) == 4
    assert not (tmp_path / "runs" / "listops" / "data").exists()
    # a second run reads the extracted files, with the server gone
    again = lra_binary.make_task_data(configs["listops"])
    assert again.report == data["listops"].report
