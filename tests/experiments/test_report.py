import json

import pytest

from experiments import report
from kerasseq.models import MODEL_NAMES
from kerasseq.models import PRESETS


@pytest.mark.large  # ~40 s: every model at every preset
def test_parameter_rows_cover_every_model_and_preset():
    rows = report.parameter_rows("token_classification", 32, 2, 64)
    assert len(rows) == len(MODEL_NAMES) * len(PRESETS)
    for row in rows:
        assert row["total"] == row["embedding"] + row["non_embedding"]
        assert abs(float(row["vs_gpt"]) - 1) <= 0.1


def test_result_tables_collect_finished_runs(tmp_path):
    for model, accuracy in [("gpt", 0.5), ("lstm", 0.75)]:
        run_dir = tmp_path / "mqar" / model
        run_dir.mkdir(parents=True)
        result = {
            "model": model,
            "task": "mqar",
            "preset": "tiny",
            "parameters": {"total": 10},
            "train_steps": 4,
            "train_time_s": 1.234,
            "eval": {"T8-8": {"loss": 1.0, "accuracy": accuracy}},
        }
        (run_dir / "results.json").write_text(json.dumps(result))
    tables = report.result_tables(str(tmp_path))
    assert [r["model"] for r in tables["mqar"]] == ["gpt", "lstm"]
    assert tables["mqar"][1]["T8-8 accuracy"] == 0.75
    assert "T8-8 loss" not in tables["mqar"][0]
