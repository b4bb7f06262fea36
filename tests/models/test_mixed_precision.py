"""Mixed float16 training of every registered model (`large`: a compile
per model). bfloat16 runs in the default suite through `run_model_test`."""

import keras
import numpy as np
import pytest

from kerasseq.models import MODEL_NAMES
from tests.models.test_heads import _build
from tests.models.test_heads import _inputs
from tests.models.test_heads import _labels
from tests.models.test_heads import _primary_task


@pytest.mark.large  # ~15-35 s a model on 2 cores
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_mixed_float16_trains_without_nan(name):
    # float16 has a narrow range: the kernels must keep their state in
    # float32 and the loss scaling of compile must reach every weight
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        task = _primary_task(name)
        model = _build(name, task)
        inputs = _inputs()
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=False,
        )
        history = model.fit(
            inputs, _labels(task, inputs), batch_size=4, epochs=3, verbose=0
        )
        assert np.all(np.isfinite(history.history["loss"])), history.history
        variables = model.trainable_variables
        assert all(v.dtype == "float32" for v in variables)
    finally:
        keras.mixed_precision.set_global_policy("float32")
