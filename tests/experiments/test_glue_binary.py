import json
import math

import numpy as np
import pytest

from experiments import glue as glue_binary
from experiments.common import metrics
from experiments.common import train
from kerasseq.data import glue
from tests.data.test_glue import mnli_row
from tests.data.test_glue import write_task
from tests.experiments.binaries import assert_usage_error
from tests.experiments.binaries import failing_run_flags
from tests.experiments.binaries import run_binary
from tests.experiments.binaries import small_config

WORDS = ("good", "bad", "film", "plot", "cast", "dull", "fine", "odd")


def _indexed_pair(header):
    """The format of a task whose rows are an index, the two texts and the
    label, in that order."""
    return (header, lambda i, a, b, y: f"{i}\t{a}\t{b}\t{y}")


# each task's header (None: CoLA has none) and one row in its format, from
# (index, text_a, text_b, label) with the label as the file writes it
FORMATS = {
    "cola": (None, lambda i, a, b, y: f"gj04\t{y}\t\t{a}"),
    "sst2": ("sentence\tlabel", lambda i, a, b, y: f"{a}\t{y}"),
    "mrpc": (
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        lambda i, a, b, y: f"{y}\t{i}\t{i + 1}\t{a}\t{b}",
    ),
    "stsb": (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t"
        "sentence1\tsentence2\tscore",
        lambda i, a, b, y: f"{i}\tnews\tf\t2012\t{i}\tn\tn\t{a}\t{b}\t{y}",
    ),
    "qqp": (
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        lambda i, a, b, y: f"{i}\t{2 * i}\t{2 * i + 1}\t{a}\t{b}\t{y}",
    ),
    "qnli": _indexed_pair("index\tquestion\tsentence\tlabel"),
    "rte": _indexed_pair("index\tsentence1\tsentence2\tlabel"),
    "wnli": _indexed_pair("index\tsentence1\tsentence2\tlabel"),
}


def _file_label(spec, label):
    if spec.is_regression:
        return f"{label:.2f}"
    return spec.label_names[label] if spec.text_labels else str(label)


def write_glue(data_dir, task, rows_per_split=12, seed=0):
    """Writes every split of `task` in GLUE's format; returns the labels
    written per split (TFDS ids, or STS-B scores)."""
    spec = glue.SPECS[task]
    rng = np.random.default_rng(seed)
    written = {}
    for split in spec.splits:
        rows, labels = [], []
        for i in range(rows_per_split):
            a = " ".join(rng.choice(WORDS, 5))
            b = " ".join(rng.choice(WORDS, 4))
            if spec.is_regression:
                label = round(float(rng.uniform(0, 5)), 2)
            else:
                label = int(rng.integers(spec.num_classes))
            text_label = _file_label(spec, label)
            if task == "mnli":
                rows.append(mnli_row(i, a, b, text_label, split != "train"))
            else:
                rows.append(FORMATS[task][1](i, a, b, text_label))
            labels.append(label)
        header = FORMATS[task][0] if task != "mnli" else None
        if task == "mnli":
            from tests.data.test_glue import MNLI_DEV_HEADER
            from tests.data.test_glue import MNLI_TRAIN_HEADER

            header = MNLI_TRAIN_HEADER if split == "train" else MNLI_DEV_HEADER
        write_task(str(data_dir), task, split, header, rows)
        written[split] = np.asarray(labels)
    return written


def _config(workdir, data_dir, task, models, **kw):
    task_args = glue_binary.GlueOptions(max_length=24)
    return small_config(
        "glue", task, models, task_args, workdir, data_dir, **kw
    )


def run_task(tmp_path, task, models):
    """Trains `models` on a small `task` fixture; checks that each split's
    official metrics are those of the model's own predictions."""
    written = write_glue(tmp_path / "data", task)
    config = _config(tmp_path / "runs", tmp_path / "data", task, models)
    data = glue_binary.make_task_data(config)
    results = train.run(config, lambda _: data)
    spec = glue.SPECS[task]
    for name in models:
        path = tmp_path / "runs" / task / name / "results.json"
        saved = json.loads(path.read_text())
        assert saved["data"]["train"]["examples"] == 12
        assert saved["data"]["train"]["skipped_empty_text"] == 0
        for split in spec.eval_splits:
            scores = saved["eval"][split]
            names = metrics.GLUE_METRICS[task]
            assert set(names) <= set(scores)
            # the official metric from the saved model's predictions
            import keras

            model = keras.saving.load_model(path.parent / "model.keras")
            outputs = model.predict(data.evals[split], verbose=0)
            if spec.is_regression:
                predictions = outputs[:, 0]
            else:
                predictions = outputs.argmax(-1)
            expected = metrics.glue_metrics(task, written[split], predictions)
            for metric in names:
                if math.isnan(expected[metric]):
                    assert math.isnan(scores[metric])
                else:
                    assert math.isclose(
                        scores[metric], expected[metric], abs_tol=1e-6
                    )
    return results


@pytest.mark.parametrize(
    "task, models", [("cola", ("gpt",)), ("stsb", ("lstm",))]
)
def test_task_end_to_end(tmp_path, task, models):
    run_task(tmp_path, task, models)


def test_mnli_matched_and_mismatched_and_the_glue_table(tmp_path):
    run_task(tmp_path, "mnli", ("transformer",))
    # a second task's results beside MNLI's
    (tmp_path / "runs" / "rte" / "transformer").mkdir(parents=True)
    (tmp_path / "runs" / "rte" / "transformer" / "results.json").write_text(
        json.dumps({"eval": {"validation": {"accuracy": 0.5, "loss": 1.0}}})
    )
    evals = json.loads(
        (tmp_path / "runs" / "mnli" / "transformer" / "results.json")
        .read_text()
    )["eval"]  # fmt: skip
    mnli = (
        evals["validation_matched"]["accuracy"]
        + evals["validation_mismatched"]["accuracy"]
    ) / 2
    rows = glue_binary.glue_table(str(tmp_path / "runs"), ["transformer", "x"])
    assert rows[0]["mnli"] == round(100 * mnli, 2)
    assert rows[0]["rte"] == 50.0
    assert rows[0]["average"] == round(100 * (mnli + 0.5) / 2, 2)
    assert rows[0]["tasks"] == 2 and rows[0]["cola"] == ""
    assert rows[1]["tasks"] == 0 and rows[1]["average"] == ""


def test_bad_options():
    with pytest.raises(ValueError, match="Valid tasks|expected one of"):
        glue_binary.GlueOptions().for_task("sts-b")
    with pytest.raises(ValueError, match="--max_length must be an integer"):
        glue_binary.GlueOptions(max_length=4)


# through the program: each exits with the message and no traceback,
# before anything trains
@pytest.mark.parametrize(
    "args, match",
    [
        (["--task=sst-2"], "sst-2"),
        (["--task=rte", "--data_dir=EMPTY"], "RTE/train.tsv"),
    ],
)
def test_bad_input_is_a_usage_error(tmp_path, args, match, monkeypatch):
    (tmp_path / "empty").mkdir()
    args = [a.replace("EMPTY", str(tmp_path / "empty")) for a in args]
    common = failing_run_flags(tmp_path / "runs")
    # no prepared TFDS copies: an empty TFDS directory
    result = run_binary(
        "glue", *common, *args, env={"TFDS_DATA_DIR": str(tmp_path)}
    )
    assert_usage_error(result, match)
    assert not (tmp_path / "runs" / "rte").exists()
