"""Every registered model through every pixel task (`large`: 784 and 1,024
steps per image, a compile per model and eval split; the default suite runs
two models on sMNIST in test_pixels_binary.py)."""

import pytest

from experiments import pixels
from experiments.common import train
from kerasseq.models import COMPARED_MODELS
from tests.data.test_pixels import write_cifar
from tests.data.test_pixels import write_mnist
from tests.experiments.test_pixels_binary import _config


@pytest.mark.large
@pytest.mark.parametrize("task", list(pixels.pixels.TASKS))
def test_every_model_on_every_pixel_task(tmp_path, task):
    data_dir = tmp_path / "data"
    if task == "scifar":
        write_cifar(str(data_dir))
    else:
        write_mnist(str(data_dir))
    config = _config(
        tmp_path / "runs",
        data_dir,
        task=task,
        models=COMPARED_MODELS,
        fresh_process=True,  # as the binary does; see train.run
    )
    results = train.run(config, pixels.make_task_data)
    assert set(results) == set(COMPARED_MODELS)
    for result in results.values():
        assert 0 <= result["eval"]["test"]["accuracy"] <= 1
