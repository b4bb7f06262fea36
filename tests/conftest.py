import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("WANDB_SILENT", "true")
# no test reads or writes the user's data caches or reaches the network
# (before TensorFlow Datasets is imported: it reads TFDS_DATA_DIR then);
# the download tests serve files on 127.0.0.1 and lift KERASSEQ_OFFLINE
_CACHES = tempfile.mkdtemp(prefix="kerasseq-tests-")
atexit.register(shutil.rmtree, _CACHES, ignore_errors=True)
os.environ["TFDS_DATA_DIR"] = os.path.join(_CACHES, "tensorflow_datasets")
os.environ["KERASSEQ_CACHE"] = os.path.join(_CACHES, "kerasseq")
os.environ["KERASSEQ_OFFLINE"] = "1"

import keras  # noqa: E402
import pytest  # noqa: E402

# first, before any JAX computation: on JAX it sets XLA's CPU flags
import kerasseq  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _seed_and_policy():
    keras.utils.set_random_seed(42)
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")
