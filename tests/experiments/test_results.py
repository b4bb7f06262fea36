import csv

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
