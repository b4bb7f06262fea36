import json
import re

import numpy as np
import pytest

from experiments import pixels
from experiments.common import train
from tests.data.test_pixels import write_cifar
from tests.data.test_pixels import write_mnist
from tests.experiments.binaries import failing_run_flags
from tests.experiments.binaries import run_binary
from tests.experiments.binaries import small_config


def _config(workdir, data_dir, task="smnist", models=("gpt", "lru"), **kw):
    task_args = kw.pop("task_args", pixels.PixelsOptions(validation_size=4))
    return small_config(
        "pixels", task, models, task_args, workdir, data_dir, **kw
    )


def test_smnist_runs_end_to_end(tmp_path):
    # one model: a second costs a compile at 784 steps (~60 s) and checks
    # nothing of the binary's that the first does not
    write_mnist(str(tmp_path / "data"))
    config = _config(tmp_path / "runs", tmp_path / "data", models=("lru",))
    results = train.run(config, pixels.make_task_data)
    assert set(results) == {"lru"}
    for name in ("lru",):
        saved = json.loads(
            (tmp_path / "runs" / "smnist" / name / "results.json").read_text()
        )
        # 8 training images (4 held out), 5 test images, 10 classes
        assert set(saved["eval"]) == {"val", "test"}
        accuracy = saved["eval"]["test"]["accuracy"]
        assert 0 <= accuracy <= 1
    table = (tmp_path / "runs" / "smnist" / "comparison.md").read_text()
    assert "| lru |" in table


def test_scifar_features_reach_the_model(tmp_path):
    write_cifar(str(tmp_path / "data"))
    config = _config(
        tmp_path / "runs", tmp_path / "data", task="scifar", models=("lru",)
    )
    data = pixels.make_task_data(config)
    assert data.model_args == {
        "feature_dim": 3,
        "num_classes": 10,
        "max_sequence_length": 1024,
    }
    inputs, labels = next(iter(data.make_train()))
    assert tuple(inputs["features"].shape) == (4, 1024, 3)


def test_psmnist_saves_its_permutation_and_never_overwrites_it(tmp_path):
    write_mnist(str(tmp_path / "data"))
    config = _config(
        tmp_path / "runs", tmp_path / "data", task="psmnist", seed=3
    )
    data = pixels.make_task_data(config)
    path = tmp_path / "runs" / "psmnist" / "permutation.npy"
    saved = np.load(path)
    np.testing.assert_array_equal(saved, pixels.pixels.make_permutation(784, 3))
    # the training inputs are the permuted pixels
    images = write_mnist(str(tmp_path / "data"))["train"][0]
    inputs, _ = next(iter(data.evals["val"]))
    expected = images[8:12].reshape(4, 784)[:, saved] / 255.0
    np.testing.assert_allclose(inputs["features"][..., 0], expected, atol=1e-6)
    # another seed clashes with the saved order: an error, the file kept
    before = path.read_bytes()
    other = _config(
        tmp_path / "runs", tmp_path / "data", task="psmnist", seed=4
    )
    with pytest.raises(train.SettingsConflict, match="permutation"):
        pixels.make_task_data(other)
    assert path.read_bytes() == before
    # ...unless that file is passed explicitly
    explicit = _config(
        tmp_path / "runs",
        tmp_path / "data",
        task="psmnist",
        seed=4,
        task_args=pixels.PixelsOptions(
            validation_size=4, permutation_file=str(path)
        ),
    )
    pixels.make_task_data(explicit)


def test_binary_reports_bad_input_without_a_traceback(tmp_path):
    write_mnist(str(tmp_path / "data"))
    np.save(tmp_path / "short.npy", np.arange(100))
    (tmp_path / "garbage.npy").write_bytes(b"not numpy")
    (tmp_path / "words.txt").write_text("three one two")
    common = failing_run_flags(tmp_path / "runs")
    cases = [
        (
            ["--task=smnist", f"--data_dir={tmp_path}"],
            "train-images-idx3-ubyte",
        ),
        (
            [
                "--task=psmnist",
                f"--data_dir={tmp_path / 'data'}",
                f"--permutation_file={tmp_path / 'short.npy'}",
            ],
            r"permutation of range\(784\)",
        ),
        (["--task=smnist", "--permutation_file=x.npy"], "--task=psmnist"),
        (
            [
                "--task=psmnist",
                f"--data_dir={tmp_path / 'data'}",
                f"--permutation_file={tmp_path / 'garbage.npy'}",
            ],
            r"garbage.npy' is not a .npy array",
        ),
        (
            [
                "--task=psmnist",
                f"--data_dir={tmp_path / 'data'}",
                f"--permutation_file={tmp_path / 'words.txt'}",
            ],
            r"words.txt' is not integers as text",
        ),
        (["--task=mnist"], "mnist"),
    ]
    for args, match in cases:
        result = run_binary("pixels", *args, *common)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
        assert re.search(match, result.stderr), (args, result.stderr[-1000:])
    # nothing was trained or written
    assert not (tmp_path / "runs" / "smnist").exists()
