import csv
import types

from experiments.common.results import comparison_table
from experiments.common.results import to_markdown
from experiments.common.results import write_table


def test_tables_keep_every_column_of_every_row(tmp_path):
    # models evaluated on different splits: no column may be dropped, and
    # writing must not fail after hours of training
    rows = [
        {"model": "gpt", "T16 accuracy": 0.9},
        {"model": "lstm", "T16 accuracy": 0.8, "T64 accuracy": 0.7},
    ]
    write_table(rows, str(tmp_path / "comparison"))
    with open(tmp_path / "comparison.csv") as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == ["model", "T16 accuracy", "T64 accuracy"]
    assert read[0]["T64 accuracy"] == "" and read[1]["T64 accuracy"] == "0.7"
    markdown = (tmp_path / "comparison.md").read_text()
    assert markdown == to_markdown(rows) + "\n"
    assert markdown.splitlines()[0] == (
        "| model | T16 accuracy | T64 accuracy |"
    )
    assert markdown.splitlines()[2] == "| gpt | 0.9 |  |"


def test_comparison_columns_follow_the_task_split_order():
    # results.json stores eval splits sorted by name (T256 before T64);
    # the table must list them as the task defines them
    config = types.SimpleNamespace(models=("gpt",))
    data = types.SimpleNamespace(
        primary_metric="accuracy",
        evals={"T16-32": None, "T64-64": None, "T256-256": None},
    )
    result = {
        "parameters": {"total": 10, "non_embedding": 8},
        "train_steps": 5,
        "train_time_s": 1.23,
        "eval": {
            "T16-32": {"accuracy": 0.9},
            "T256-256": {"accuracy": 0.5},
            "T64-64": {"accuracy": 0.7},
        },
    }
    (row,) = comparison_table(config, {"gpt": result}, data)
    assert list(row)[-3:] == [
        "T16-32 accuracy",
        "T64-64 accuracy",
        "T256-256 accuracy",
    ]
    assert row["T256-256 accuracy"] == 0.5 and row["train_time_s"] == 1.2
