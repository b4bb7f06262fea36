import json
import os

import numpy as np
import pytest

from experiments import lra as lra_binary
from experiments.common import train
from kerasseq.data import listops
from kerasseq.data import lra
from kerasseq.data import pathfinder
from kerasseq.models import MODEL_NAMES
from kerasseq.models import build_model
from kerasseq.models import count_parameters
from tests.data.test_lra import write_aan
from tests.data.test_lra import write_imdb
from tests.data.test_pixels import write_cifar
from tests.experiments.binaries import assert_usage_error
from tests.experiments.binaries import failing_run_flags
from tests.experiments.binaries import run_binary
from tests.experiments.binaries import small_config

# small inputs for every task: (task, max_length, how the test writes data)
SMALL = {
    "listops": 48,
    "text": 40,
    "retrieval": 24,
    "image": 1024,
    "pathfinder": 1024,
}


def write_task_data(task, directory):
    """Writes a small data set of `task` in its real format; returns the
    `LraOptions` it needs."""
    directory = str(directory)
    if task == "listops":
        splits = listops.generate(
            {"train": 24, "val": 8, "test": 8},
            0,
            max_depth=4,
            max_args=4,
            min_length=3,
            max_length=SMALL["listops"],
        )
        for split, examples in splits.items():
            path = os.path.join(directory, listops.SPLIT_FILES[split])
            listops.write_tsv(path, examples)
        return {}
    if task == "text":
        write_imdb(directory, per_label=8)
        return {"validation_size": 4}
    if task == "retrieval":
        write_aan(directory, rows_per_split=12)
        return {}
    if task == "image":
        write_cifar(directory, per_batch=4)
        return {"validation_size": 4}
    images, labels = pathfinder.generate(40, seed=0)
    pathfinder.write(directory, images, labels)
    return {}


def _config(workdir, data_dir, task, models, **kw):
    options = kw.pop("task_options", {})
    task_args = lra_binary.LraOptions(max_length=SMALL[task], **options)
    return small_config("lra", task, models, task_args, workdir, data_dir, **kw)


# the default suite trains a few models on the token tasks; the pixel
# tasks, whose 1,024-step sequences take a minute or more per model to
# compile and run here, and every model on every task are in
# test_lra_every_model.py (`large`)
PAIRS = {
    "listops": ("gpt",),
    "text": ("lstm",),
    "retrieval": ("lru",),
    "image": ("performer",),
    "pathfinder": ("deltanet",),
}
DEFAULT_TASKS = ("listops", "text", "retrieval")


def run_task(tmp_path, task, models, fresh_process=False):
    """Trains `models` on a small `task` data set; returns the results."""
    data_dir = tmp_path / task
    options = write_task_data(task, data_dir)
    config = _config(
        tmp_path / "runs",
        data_dir,
        task,
        models,
        task_options=options,
        fresh_process=fresh_process,
    )
    results = train.run(config, lra_binary.make_task_data)
    assert set(results) == set(models)
    for name in models:
        path = tmp_path / "runs" / task / name / "results.json"
        saved = json.loads(path.read_text())
        assert saved["family"] == "lra" and saved["task"] == task
        assert 0 <= saved["eval"]["test"]["accuracy"] <= 1
        assert (path.parent / "model.keras").exists()
    return results


@pytest.mark.parametrize("task", DEFAULT_TASKS)
def test_task_end_to_end(tmp_path, task):
    run_task(tmp_path, task, PAIRS[task])


def test_lra_table(tmp_path):
    scores = {
        ("gpt", "listops"): 0.375,
        ("gpt", "retrieval"): 0.5,
        ("lru", "text"): 0.25,
    }
    for (model, task), accuracy in scores.items():
        path = tmp_path / task / model / "results.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"eval": {"test": {"accuracy": accuracy}}}))
    table = lra_binary.lra_table(str(tmp_path), ("gpt", "lru", "mamba"))
    assert [row["model"] for row in table] == ["gpt", "lru", "mamba"]
    gpt, lru, mamba = table
    assert (gpt["listops"], gpt["retrieval"], gpt["text"]) == (37.5, 50.0, "")
    assert (gpt["average"], gpt["tasks"]) == (43.75, 2)
    assert (lru["text"], lru["average"], lru["tasks"]) == (25.0, 25.0, 1)
    assert (mamba["average"], mamba["tasks"]) == ("", 0)
    assert list(gpt) == ["model", *lra.TASKS, "average", "tasks"]


def test_batches_reach_the_model_in_each_task(tmp_path):
    for task in PAIRS:
        options = write_task_data(task, tmp_path / task)
        config = _config(
            tmp_path / "runs",
            tmp_path / task,
            task,
            ("gpt",),
            task_options=options,
        )
        data = lra_binary.make_task_data(config)
        spec = lra.task_spec(task)
        assert data.head == spec.head
        assert data.model_args["vocabulary_size"] == spec.vocabulary_size
        inputs, labels = next(iter(data.make_train()))
        for name, value in inputs.items():
            assert tuple(value.shape) == (4, SMALL[task]), name
        assert int(np.max(labels)) < spec.num_classes


def test_lra_setup_unless_flags_say_otherwise(tmp_path):
    base = _config(tmp_path, None, "listops", ("gpt",), preset="small")
    args = base.task_args
    config = lra_binary.task_config(base, "listops", args, given=set())
    spec = lra.SPECS["listops"]
    assert (config.steps, config.batch_size, config.learning_rate) == (
        5000,
        32,
        spec.learning_rate,
    )
    assert config.preset == "base"
    assert config.model_args == {
        "hidden_dim": 512,
        "num_layers": 6,
        "dropout": 0.1,
    }
    given = lra_binary.task_config(
        base, "listops", args, given={"steps", "preset"}
    )
    assert given.steps == 2 and given.preset == "small"
    assert given.model_args == {} and given.batch_size == 32


@pytest.mark.parametrize("tokens", ["lra", "brackets"])
def test_listops_tokens_reach_the_data_and_the_record(tmp_path, tokens):
    write_task_data("listops", tmp_path / "data")
    options = {} if tokens == "lra" else {"listops_tokens": tokens}
    config = _config(
        tmp_path / "runs",
        tmp_path / "data",
        "listops",
        ("gpt",),
        task_options=options,
    )
    # LRA's published tokens by default, recorded in config.json
    assert config.to_dict()["task_args"]["listops_tokens"] == tokens
    data = lra_binary.make_task_data(config)
    # and in results.json
    assert data.report["listops_tokens"] == tokens
    assert data.report["published_with"] == listops.PUBLISHED_WITH[tokens]
    ids = np.concatenate(
        [inputs["token_ids"].numpy() for inputs, _ in data.make_train()]
    )
    closes = np.any(ids == listops.TOKEN_IDS["]"])
    assert closes == (tokens == "brackets")
    # the other tasks record no ListOps tokens
    other = lra_binary.LraOptions(listops_tokens=tokens).for_task("text")
    assert other.listops_tokens is None


def test_generated_data_is_reused_and_never_overwritten(tmp_path):
    options = {
        "generate": True,
        "num_generated": 60,
        "listops_max_depth": 3,
        "listops_min_length": 3,
    }
    config = _config(
        tmp_path / "runs", None, "listops", ("gpt",), task_options=options
    )
    data = lra_binary.make_task_data(config)
    directory = tmp_path / "runs" / "listops" / "data"
    files = {p.name: p.read_bytes() for p in directory.iterdir()}
    assert set(files) == {
        "basic_train.tsv",
        "basic_val.tsv",
        "basic_test.tsv",
        "listops_generator.json",
    }
    sources, labels = listops.load(str(directory), "test")
    assert len(labels) == 1 and len(sources[0]) <= SMALL["listops"]
    assert data.model_args["max_sequence_length"] == SMALL["listops"]
    # the same settings read the same files
    lra_binary.make_task_data(config)
    # another seed would draw other data: an error, nothing rewritten
    other = _config(
        tmp_path / "runs",
        None,
        "listops",
        ("gpt",),
        task_options=options,
        seed=5,
    )
    with pytest.raises(train.SettingsConflict, match="other settings"):
        lra_binary.make_task_data(other)
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == files


@pytest.mark.parametrize(
    "task, options, message",
    [
        ("text", {"generate": True}, "--generate applies to"),
        ("listops", {"validation_size": 3}, "--validation_size applies"),
        ("image", {"max_length": 100}, "pixel count 1024, got 100"),
        (
            "listops",
            {"num_train_examples": 0},
            "num_train_examples must be a positive",
        ),
        ("gif", {}, "expected one of"),
        (
            "listops",
            {"listops_tokens": "words"},
            "Unknown --listops_tokens='words'; valid: lra, brackets",
        ),
    ],
)
def test_bad_options(task, options, message):
    with pytest.raises(ValueError, match=message):
        lra_binary.LraOptions(**options).for_task(task)


def test_binary_reports_bad_input_without_a_traceback(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "basic_train.tsv").write_text(
        "Source\tTarget\n[MAX 1 2 ]\t2\n[MAX 1 2 ]\tx\n"
    )
    common = failing_run_flags(tmp_path / "runs")
    cases = [
        (["--task=listops", f"--data_dir={tmp_path}"], "basic_train.tsv"),
        (
            ["--task=listops", f"--data_dir={tmp_path / 'bad'}"],
            "basic_train.tsv:3: expected a Target digit",
        ),
        (["--task=cifar"], "listops"),
        (
            ["--task=text", "--generate"],
            "--generate applies to --task=listops or pathfinder",
        ),
        (
            ["--listops_tokens=words"],
            "--listops_tokens=words: value should be one of <lra|brackets>",
        ),
    ]
    for args, match in cases:
        assert_usage_error(run_binary("lra", *common, *args), match)
    assert not (tmp_path / "runs" / "listops" / "gpt").exists()


# listops, at the `base` widths that test_registry.py checks, is in
# test_lra_every_model.py
@pytest.mark.parametrize("task", ["text", "retrieval", "image", "pathfinder"])
def test_lra_sizes_keep_every_model_within_10_percent_of_gpt(task):
    check_parameters_matched(task)


def check_parameters_matched(task):
    spec = lra.task_spec(task)
    counts = {}
    for name in MODEL_NAMES:
        model = build_model(
            name,
            spec.head,
            spec.preset,
            vocabulary_size=spec.vocabulary_size,
            num_classes=spec.num_classes,
            max_sequence_length=spec.max_length,
            **spec.model_args(),
            **spec.model_overrides.get(name, {}),
        )
        counts[name] = count_parameters(model)["non_embedding"]
    reference = counts["gpt"]
    far = {
        name: round(count / reference, 3)
        for name, count in counts.items()
        if abs(count - reference) > 0.1 * reference
    }
    assert not far, f"non-embedding parameters relative to gpt: {far}"
