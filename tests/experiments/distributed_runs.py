"""Training runs on several (virtual) devices, each in a process of its own
(devices are fixed when the backend starts). `test_distribute.py` runs
`python -m tests.experiments.distributed_runs MODE` and reads the JSON it
prints on its last line.

- `mirrored`: TensorFlow, 2 logical CPU devices. Each model trains 3 steps
  of SGD from the same initial weights on one device and under
  `MirroredStrategy`, with the same global batches; prints both losses.
- `jax`: JAX, 2 CPU devices. GPT trains 3 steps of SGD on one device, under
  `data_parallel` and under `model_parallel`, from the same seed; prints
  each run's losses, replicas, and every weight's devices and shard shape.
"""

import json
import sys

import numpy as np

MODELS = ("gpt", "mamba", "deltanet")
BATCH = 8
LENGTH = 16
VOCABULARY = 32
STEPS = 3


def _batches():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCABULARY, (STEPS * BATCH, LENGTH))
    inputs = {
        "token_ids": tokens.astype("int32"),
        "padding_mask": np.ones_like(tokens, dtype=bool),
    }
    labels = np.roll(tokens, -1, axis=1).astype("int32")
    return inputs, labels


def _build(name):
    import keras

    from kerasseq.models import build_model

    keras.utils.set_random_seed(0)
    return build_model(
        name,
        "causal_lm",
        "tiny",
        vocabulary_size=VOCABULARY,
        max_sequence_length=LENGTH,
        dropout=0.0,
    )


def _train(model, jit_compile):
    """Per-step losses of 3 SGD steps over the fixed batches."""
    import keras

    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    inputs, labels = _batches()
    history = model.fit(
        inputs,
        labels,
        batch_size=BATCH,
        epochs=STEPS,
        steps_per_epoch=1,
        shuffle=False,
        verbose=0,
    )
    return [float(v) for v in history.history["loss"]]


def mirrored():
    from experiments.common.distribute import get_strategy

    strategy = get_strategy("mirrored", virtual_devices=2)
    results = {"replicas": strategy.num_replicas_in_sync}
    for name in MODELS:
        single = _build(name)
        single(_batches()[0])  # builds the weights
        weights = single.get_weights()
        single_losses = _train(single, jit_compile=True)
        with strategy.scope():
            mirrored_model = _build(name)
            mirrored_model(_batches()[0])
            mirrored_model.set_weights(weights)
            mirrored_losses = _train(mirrored_model, jit_compile=False)
        results[name] = {"single": single_losses, "mirrored": mirrored_losses}
    return results


def jax_distribution(kind):
    """One JAX run under `--strategy=kind` (the devices split in two)."""
    from experiments.common.distribute import get_strategy

    distribution = get_strategy(kind, virtual_devices=2)
    with distribution.scope():
        model = _build("gpt")
        model(_batches()[0])
        losses = _train(model, jit_compile=True)
    weights = {}
    for variable in model.weights:
        sharding = variable.value.sharding
        weights[variable.path] = {
            "devices": len(sharding.device_set),
            "shape": list(variable.shape),
            "shard": list(sharding.shard_shape(tuple(variable.shape))),
        }
    return {
        "replicas": distribution.num_replicas_in_sync,
        "losses": losses,
        "weights": weights,
    }


def main(mode):
    if mode == "mirrored":
        results = mirrored()
    else:
        results = {
            kind: jax_distribution(kind)
            for kind in ("default", "data_parallel", "model_parallel")
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
