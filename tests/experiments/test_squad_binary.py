import json
import math

import pytest

from experiments import squad as squad_binary
from experiments.common import squad_metrics
from experiments.common import train
from tests.data.test_squad import long_context
from tests.data.test_squad import v11_articles
from tests.data.test_squad import v20_articles
from tests.data.test_squad import write_squad
from tests.experiments.binaries import assert_usage_error
from tests.experiments.binaries import failing_run_flags
from tests.experiments.binaries import run_binary
from tests.experiments.binaries import small_config


def _articles(version, seed):
    """The small articles of the data tests, one long context that needs
    several windows, and one answer that is not in its context."""
    articles = v11_articles() if version == "1.1" else v20_articles()
    context = long_context(seed, 60)
    words = context.split(" ")
    qas = []
    for k, index in enumerate((3, 30, 55)):
        start = len(" ".join(words[:index])) + 1
        qa = {
            "id": f"long{k}",
            "question": f"What is word {index}?",
            "answers": [{"text": words[index], "answer_start": start}],
        }
        if version == "2.0":
            qa["is_impossible"] = False
        qas.append(qa)
    qas.append(
        {
            "id": "missing",
            "question": "Which word is absent?",
            "answers": [{"text": "zebra", "answer_start": 0}],
            **({"is_impossible": False} if version == "2.0" else {}),
        }
    )
    articles.append(
        {"title": "Long", "paragraphs": [{"context": context, "qas": qas}]}
    )
    return articles


def _config(workdir, data_dir, version, models, **kw):
    task_args = squad_binary.SquadOptions(
        version=version, max_length=48, doc_stride=16, max_query_length=12
    )
    task = squad_binary.task_name(version)
    return small_config(
        "squad", task, models, task_args, workdir, data_dir, **kw
    )


def run_squad(tmp_path, version, models):
    """Trains `models` on a small SQuAD fixture; checks the scores against
    the saved predictions and the counts of what was skipped."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for split, seed in (("train", 0), ("validation", 1)):
        write_squad(data_dir, version, split, _articles(version, seed))
    config = _config(tmp_path / "runs", data_dir, version, models)
    results = train.run(config, squad_binary.make_task_data)
    questions = 3 + 3 + (1 if version == "2.0" else 0)
    for name in models:
        run_dir = tmp_path / "runs" / f"squad{version}" / name
        saved = json.loads((run_dir / "results.json").read_text())
        report = saved["data"]["validation"]
        assert report["skipped_answer_not_in_context"] == 1
        assert report["used_examples"] == questions
        assert report["windows"] > questions  # the long context is cut
        scores = saved["eval"]["validation"]
        assert scores["count"] == questions
        predictions = json.loads(
            (run_dir / "predictions_validation.json").read_text()
        )
        assert len(predictions) == questions
        answers = {}
        for article in _articles(version, 1):
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    if qa["id"] != "missing":
                        answers[qa["id"]] = [
                            a["text"]
                            for a in qa["answers"]
                            if not qa.get("is_impossible")
                        ]
        expected = squad_metrics.squad_scores(predictions, answers, version)
        for key in ("exact_match", "f1"):
            assert math.isclose(scores[key], expected[key], abs_tol=1e-6)
        if version == "2.0":
            assert scores["no_answer_count"] == 1
    return results


# ~37 s; 2.0's end to end, with its no-answer scoring, is in the default
# suite
@pytest.mark.large
def test_v11_end_to_end(tmp_path):
    run_squad(tmp_path, "1.1", ("transformer",))


def test_v20_end_to_end(tmp_path):
    run_squad(tmp_path, "2.0", ("gpt",))


def test_bad_options():
    with pytest.raises(ValueError, match="valid: 1.1, 2.0"):
        squad_binary.SquadOptions(version="3.0")
    with pytest.raises(ValueError, match="must be below the shortest"):
        squad_binary.SquadOptions(
            max_length=64, doc_stride=40, max_query_length=24
        )
    with pytest.raises(ValueError, match="--n_best must be a positive integer"):
        squad_binary.SquadOptions(n_best=0)


def test_missing_files_are_a_usage_error(tmp_path):
    common = [
        *failing_run_flags(tmp_path / "runs"),
        f"--data_dir={tmp_path}",
        "--version=2.0",
    ]
    # no prepared TFDS copies: an empty TFDS directory
    result = run_binary("squad", *common, env={"TFDS_DATA_DIR": str(tmp_path)})
    assert_usage_error(result, "train-v2.0.json")
    assert not (tmp_path / "runs" / "squad2.0").exists()
