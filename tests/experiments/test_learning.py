"""Learning tests: models trained by the experiment loop reach known
accuracies on generated data. Slow on a CPU, so marked `large`."""

import pytest

from experiments import synthetic
from experiments.common import train
from experiments.common.config import ExperimentConfig


@pytest.mark.large
@pytest.mark.parametrize("model", ["gpt", "deltanet"])
def test_model_learns_mqar_with_8_kv_pairs(tmp_path, model):
    # attention and the delta rule recall by key (Arora et al. 2023; Yang
    # et al. 2024)
    task_args = synthetic.make_task_args(
        "mqar",
        train_seq_len="24,24",
        eval_seq_len=["24,24"],
        num_train_examples=20000,
        num_eval_examples=1000,
        num_kv_pairs=8,
        num_keys=16,
        num_values=16,
    )
    config = ExperimentConfig(
        family="synthetic",
        task="mqar",
        models=(model,),
        preset="tiny",
        task_args=task_args,
        workdir=str(tmp_path),
        steps=1000,
        eval_every=500,
        batch_size=64,
        learning_rate=1e-3,
        warmup_steps=100,
        wandb_mode="disabled",
        verbose=0,
    )
    results = train.run(config, synthetic.make_task_data)
    # fresh sequences, not seen in training
    assert results[model]["eval"]["T24-24"]["accuracy"] >= 0.95
