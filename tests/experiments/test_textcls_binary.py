import json

import pytest
from absl import app

from experiments import textcls as textcls_binary
from experiments.common import train
from tests.data.test_textcls import write_folder
from tests.experiments.binaries import run_binary
from tests.experiments.binaries import small_config

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


def test_bad_settings_and_missing_data(tmp_path):
    with pytest.raises(ValueError, match="--test_fraction must be in"):
        textcls_binary.TextclsOptions(test_fraction=1.5)
    (tmp_path / "empty").mkdir()
    config = small_config(
        "textcls",
        "folder",
        ("gpt",),
        textcls_binary.TextclsOptions(max_length=16),
        tmp_path / "runs",
        tmp_path / "empty",
    )
    with pytest.raises(app.UsageError, match="0 class subdirectories"):
        train.run_program(config, textcls_binary.make_task_data)
