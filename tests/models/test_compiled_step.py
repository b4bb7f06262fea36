"""The compiled training step of each model is one device program: its
HLO holds no transfer to or from the host (infeed, outfeed, send, recv,
host callbacks), which on a TPU would stall every step. On TensorFlow the
step is compiled with `jit_compile=True`; on JAX with `jax.jit`."""

import re

import keras
import numpy as np
import pytest

from kerasseq.models import COMPARED_MODELS
from tests.models.test_heads import _build
from tests.models.test_heads import _inputs
from tests.models.test_heads import _labels
from tests.models.test_heads import _primary_task

# an instruction or custom call that reaches the host, in HLO or StableHLO
HOST_TRANSFER = re.compile(
    r"\b(infeed|outfeed|send|send-done|recv|recv-done)\b|callback|"
    r"host_compute|SendToHost|RecvFromHost",
    re.IGNORECASE,
)
# the recurrent kernels and one attention model run in the default suite
DEFAULT = ("gpt", "mamba", "lru", "deltanet", "lstm")


def _step_hlo(name):
    task = _primary_task(name)
    model = _build(name, task)
    inputs = _inputs()
    labels = _labels(task, inputs)
    model(inputs)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if keras.backend.backend() == "jax":
        import jax

        def loss(trainable, non_trainable, x, y):
            outputs, _ = model.stateless_call(
                trainable, non_trainable, x, training=True
            )
            return loss_fn(y, outputs)

        step = jax.jit(jax.value_and_grad(loss))
        lowered = step.lower(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            inputs,
            labels,
        )
        return lowered.as_text()
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            value = loss_fn(y, model(x, training=True))
        return value, tape.gradient(value, model.trainable_variables)

    x = {k: tf.constant(v) for k, v in inputs.items()}
    return step.experimental_get_compiler_ir(x, tf.constant(labels))("hlo")


def _check(name):
    hlo = _step_hlo(name)
    assert "ENTRY" in hlo or "func.func" in hlo, hlo[:500]
    found = sorted({m.group(0) for m in HOST_TRANSFER.finditer(hlo)})
    assert not found, f"{name}: the step reaches the host via {found}"


@pytest.mark.parametrize("name", DEFAULT)
def test_train_step_stays_on_the_device(name):
    _check(name)


@pytest.mark.large
@pytest.mark.parametrize(
    "name", [n for n in COMPARED_MODELS if n not in DEFAULT]
)
def test_every_models_train_step_stays_on_the_device(name):
    _check(name)


def test_the_check_sees_a_host_round_trip():
    # where a step does reach the host, the check finds it: JAX lowers a
    # callback; TensorFlow refuses to compile it at all
    if keras.backend.backend() == "jax":
        import jax

        def f(x):
            jax.debug.callback(lambda v: None, x)
            return x * 2

        hlo = jax.jit(f).lower(np.ones(3, "float32")).as_text()
        assert HOST_TRANSFER.search(hlo)
        return
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def f(x):
        return tf.py_function(lambda v: v * 2, [x], tf.float32)

    with pytest.raises(ValueError, match="unsupported operations"):
        f.experimental_get_compiler_ir(tf.ones(3))("hlo")
