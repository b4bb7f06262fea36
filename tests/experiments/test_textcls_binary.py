import json

from tests.data.test_textcls import write_folder
from tests.experiments.binaries import assert_usage_error
from tests.experiments.binaries import run_binary

SMALL = (
    "--preset=tiny",
    "--steps=2",
    "--eval_every=2",
    "--batch_size=4",
    "--max_length=16",
    "--wandb_mode=disabled",
)


def test_folder_classification_end_to_end(tmp_path):
    data = write_folder(tmp_path / "data", per_class=10)
    result = run_binary(
        "textcls",
        *SMALL,
        "--model=transformer",
        f"--data_dir={data}",
        f"--workdir={tmp_path / 'runs'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads(
        (
            tmp_path / "runs" / "folder" / "transformer" / "results.json"
        ).read_text()
    )
    assert set(saved["eval"]) == {"validation", "test"}
    assert 0 <= saved["eval"]["test"]["accuracy"] <= 1
    report = saved["data"]
    assert report["classes"] == ["business", "sport"]
    # 10 per class: 2 test, 1 validation, 7 train in each
    assert (report["train"]["examples"], report["test"]["examples"]) == (14, 4)
    assert report["validation"]["examples"] == 2


def test_usage_errors(tmp_path):
    result = run_binary(
        "textcls", *SMALL, f"--data_dir={tmp_path}", "--test_fraction=1.5"
    )
    assert_usage_error(result, "--test_fraction must be in [0, 1)")
    (tmp_path / "empty").mkdir()
    result = run_binary(
        "textcls",
        *SMALL,
        f"--data_dir={tmp_path / 'empty'}",
        f"--workdir={tmp_path / 'runs'}",
    )
    assert_usage_error(result, "0 class subdirectories")
