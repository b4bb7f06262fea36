import glob
import json
import os
import platform
import subprocess
import sys

import pytest

from experiments import report
from experiments.common import results as results_lib
from kerasseq.models import MODEL_NAMES
from kerasseq.models import PRESETS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.large  # ~40 s: every model at every preset
def test_parameter_rows_cover_every_model_and_preset():
    rows = report.parameter_rows("token_classification", 32, 2, 64)
    assert len(rows) == len(MODEL_NAMES) * len(PRESETS)
    for row in rows:
        assert row["total"] == row["embedding"] + row["non_embedding"]
        assert abs(float(row["vs_gpt"]) - 1) <= 0.1


def _write_run(workdir, model, accuracy, provenance=None):
    """A finished training run's results.json (as train.py writes it)."""
    run_dir = workdir / "mqar" / model
    run_dir.mkdir(parents=True)
    result = {
        "model": model,
        "task": "mqar",
        "preset": "tiny",
        "parameters": {"total": 10},
        "train_steps": 4,
        "train_time_s": 1.0,
        "eval": {"T8-8": {"loss": 1.0, "accuracy": accuracy}},
        "finished_at": "2026-01-02T03:04:05",
    }
    if provenance:
        result["provenance"] = provenance
    (run_dir / "results.json").write_text(json.dumps(result))


def test_result_tables_collect_finished_runs(tmp_path):
    _write_run(tmp_path, "gpt", 0.5)
    _write_run(tmp_path, "lstm", 0.75)
    # experiments.evaluate's results.json has no table of its own here
    (tmp_path / "evaluate" / "gpt").mkdir(parents=True)
    (tmp_path / "evaluate" / "gpt" / "results.json").write_text('{"tasks": {}}')
    tables = report.result_tables(str(tmp_path))
    assert list(tables) == ["mqar"]
    assert [r["model"] for r in tables["mqar"]] == ["gpt", "lstm"]
    assert tables["mqar"][1]["T8-8 accuracy"] == 0.75
    assert "T8-8 loss" not in tables["mqar"][0]


def test_results_document_is_stamped_with_what_the_runs_recorded(tmp_path):
    provenance = {
        "command": "python -m experiments.synthetic --task=mqar",
        "commit": "abc123",
        "date": "2026-01-02T03:04:05+00:00",
        "machine": "Linux x86_64, 2 CPUs",
        "versions": {"python": "3.11.7", "keras": "3.15.1"},
    }
    _write_run(tmp_path, "gpt", 0.5, provenance)
    _write_run(tmp_path, "lstm", 0.25, {**provenance, "date": "2026-01-03"})
    notes = tmp_path / "notes.md"
    notes.write_text("GPT recalls.\n")
    text = report.results_document(
        [str(tmp_path)], "MQAR", "docs/results/mqar.md", str(notes)
    )
    lines = text.splitlines()
    assert lines[0] == "# MQAR"
    assert "- command: `python -m experiments.synthetic --task=mqar`" in lines
    assert "- commit: `abc123`" in lines
    assert "- date: 2026-01-02T03:04:05+00:00 to 2026-01-03" in lines
    assert "- machine: Linux x86_64, 2 CPUs" in lines
    assert "- versions: python 3.11.7, keras 3.15.1" in lines
    regenerate = next(x for x in lines if x.startswith("- regenerate with:"))
    assert "python -m experiments.synthetic --task=mqar && " in regenerate
    assert f"--results_dir={tmp_path} --title=MQAR" in regenerate
    assert "--output=docs/results/mqar.md" in regenerate
    assert "## mqar" in lines
    assert "| gpt | tiny | 10 | 4 | 1.0 | 0.5 |" in lines
    assert lines[-1] == "GPT recalls."


def test_results_document_says_what_older_runs_did_not_record(tmp_path):
    _write_run(tmp_path, "gpt", 0.5)
    text = report.results_document([str(tmp_path)], "MQAR")
    assert "- command: not recorded" in text
    assert "- date: 2026-01-02T03:04:05" in text  # finished_at
    assert report.results_document([str(tmp_path / "none")], "MQAR") is None


def test_document_command_writes_the_file(tmp_path):
    _write_run(tmp_path / "runs", "gpt", 0.5)
    output = tmp_path / "docs" / "mqar.md"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.report",
            "document",
            f"--results_dir={tmp_path / 'runs'}",
            "--title=MQAR",
            f"--output={output}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    assert output.read_text().startswith("# MQAR\n")


def test_provenance_names_command_commit_date_machine_versions():
    recorded = results_lib.provenance()
    assert set(recorded) == {"command", "commit", "date", "machine", "versions"}
    assert recorded["commit"] is None or len(recorded["commit"]) >= 40
    assert recorded["versions"]["python"] == platform.python_version()
    argv = [os.path.join(ROOT, "experiments", "glue.py"), "--task=sst2", "a b"]
    assert results_lib.command_line(argv) == (
        "python -m experiments.glue --task=sst2 'a b'"
    )


def test_moved_results_documents_keep_the_document_format():
    """docs/results/ holds documents as `report document` writes them:
    title, origin comment, the stamp's six lines, then sections."""
    paths = glob.glob(os.path.join(ROOT, "docs", "results", "*.md"))
    assert paths
    keys = [
        "command",
        "commit",
        "date",
        "machine",
        "versions",
        "regenerate with",
    ]
    for path in paths:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        assert lines[0].startswith("# "), path
        assert lines[2].startswith("<!-- "), path
        stamp = [line.split(":")[0] for line in lines[4:10]]
        assert stamp == [f"- {key}" for key in keys], path
        assert lines[11].startswith("## "), path


def test_results_document_takes_benchmark_outputs(tmp_path):
    environment = {"backend": "jax", "keras": "3.15.1", "python": "3.11.7"}
    environment.update(machine="x86_64", cpus=2, device="cpu", jax="0.10.2")
    saved = {
        "environment": environment,
        "results": [],
        "provenance": {"command": "python -m experiments.benchmark ops"},
    }
    (tmp_path / "ops_jax.json").write_text(json.dumps(saved))
    (tmp_path / "ops_jax.md").write_text("backend=jax\n\n| op |\n|---|\n")
    text = report.results_document([str(tmp_path)], "Ops")
    assert "- command: `python -m experiments.benchmark ops`" in text
    assert "- machine: x86_64, 2 CPUs, device cpu" in text
    assert "- versions: python 3.11.7, keras 3.15.1, jax 0.10.2" in text
    assert "## ops_jax\n\n| op |\n|---|\n" in text
    assert "backend=jax" not in text
