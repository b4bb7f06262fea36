"""Mixed-precision training of every registered model (`large`: a compile
per model and policy). The default suite calls every mixer under
`mixed_bfloat16` through `run_model_test`."""

import keras
import numpy as np
import pytest

from kerasseq.models import MODEL_NAMES
from tests.models.test_heads import _build
from tests.models.test_heads import _inputs
from tests.models.test_heads import _labels
from tests.models.test_heads import _primary_task


@pytest.mark.large  # ~15-35 s a model and policy on 2 cores
@pytest.mark.parametrize(
    "policy, jit_compile",
    [("mixed_float16", False), ("mixed_bfloat16", True)],
)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_mixed_precision_trains_without_nan(name, policy, jit_compile):
    # half precision has a narrow range (float16) or few mantissa bits
    # (bfloat16): the kernels must keep their state in float32 and, for
    # float16, the loss scaling of compile must reach every weight
    keras.mixed_precision.set_global_policy(policy)
    try:
        task = _primary_task(name)
        model = _build(name, task)
        inputs = _inputs()
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit_compile,
        )
        before = [w.copy() for w in model.get_weights()]
        history = model.fit(
            inputs, _labels(task, inputs), batch_size=4, epochs=20, verbose=0
        )
        assert np.all(np.isfinite(history.history["loss"])), history.history
        variables = model.trainable_variables
        assert all(v.dtype == "float32" for v in variables)
        after = model.get_weights()
        assert any(
            not np.allclose(a, b) for a, b in zip(before, after, strict=True)
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
