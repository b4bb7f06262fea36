import keras
import numpy as np
import pytest

from kerasseq.layers import SequencePooling


def reference(x, mask, mode):
    out = []
    for xb, mb in zip(x, mask, strict=False):
        real = xb[mb]
        out.append(
            {
                "mean": real.mean(0),
                "max": real.max(0),
                "first": xb[0],
                "last": real[-1],
            }[mode]
        )
    return np.stack(out)


@pytest.mark.parametrize("mode", ["mean", "max", "first", "last"])
def test_matches_reference(mode):
    x = np.random.normal(size=(3, 6, 4)).astype("float32")
    mask = np.ones((3, 6), bool)
    mask[1, 4:] = False
    mask[2, 1:] = False
    y = keras.ops.convert_to_numpy(SequencePooling(mode)(x, padding_mask=mask))
    np.testing.assert_allclose(y, reference(x, mask, mode), atol=1e-6)


def test_bad_mode():
    with pytest.raises(ValueError, match="`pooling`.*got 'sum'"):
        SequencePooling("sum")
