"""The engines a run trains on: `--strategy` and `--virtual_devices`.

TensorFlow backend (`tf.distribute`):

- `default`: one device.
- `mirrored`: `MirroredStrategy` over every local GPU, or every logical CPU
  device when there is no GPU (`--virtual_devices=N` makes N of them).
- `multi_worker`: `MultiWorkerMirroredStrategy`, the cluster read from
  `TF_CONFIG` (one process per machine, all started with the same command).
- `tpu`: `TPUStrategy` through `TPUClusterResolver` (a Colab TPU runtime,
  or `TPU_NAME`).

JAX backend (`keras.distribution`):

- `data_parallel`: `DataParallel` over every device.
- `model_parallel`: `ModelParallel` on a mesh `(batch, model)` whose model
  axis spans every device; `model_parallel_layout` shards the embedding
  table, the attention and MLP projections and Mamba's projections, and
  replicates the rest.

`auto` (the default) is `mirrored` on TensorFlow with several GPUs,
`data_parallel` on JAX with several devices, and `default` otherwise.

Under a `tf.distribute` strategy with several replicas the train step is
not XLA-compiled on CPUs and GPUs, as Keras decides for itself under
`jit_compile="auto"` (TensorFlow cannot compile the cross-replica
collectives for CPUs); the kernels' loops still run with static bounds.
On a TPU everything is compiled.
"""

import contextlib
import glob
import json
import os

import keras

from experiments.common.config import JAX_STRATEGIES
from experiments.common.config import STRATEGIES
from experiments.common.config import TF_STRATEGIES

# weights model_parallel shards over the mesh's "model" axis, as regular
# expressions that match a variable's whole path (others are replicated):
# Megatron's split of each MLP and attention (the first
# projection by columns, the second by rows) and the embedding's features
MODEL_PARALLEL_LAYOUT = (
    (r".*token_embedding/embeddings", (None, "model")),
    (r".*mlp_in/kernel", (None, "model")),
    (r".*mlp_in/bias", ("model",)),
    (r".*mlp_out/kernel", ("model", None)),
    (r".*mixer_\d+/(query|key|value)_kernel", (None, "model", None)),
    (r".*mixer_\d+/(query|key|value)_bias", ("model", None)),
    (r".*mixer_\d+/output_kernel", ("model", None, None)),
    (r".*mixer_\d+/in_proj/kernel", (None, "model")),
    (r".*mixer_\d+/out_proj/kernel", ("model", None)),
)


class DistributionError(ValueError):
    """A `--strategy` this machine or backend cannot run, or settings that
    do not fit it (a batch that does not split across the replicas)."""


def set_virtual_devices(count):
    """Splits the CPU into `count` logical devices (0: leave as found).

    For trying `mirrored`, `data_parallel` or `model_parallel` on a machine
    without accelerators. Must run before the backend starts its runtime.

    Raises:
        DistributionError: the runtime has already started with another
            number of devices.
    """
    if not count:
        return
    if count < 0:
        raise DistributionError(
            f"--virtual_devices must be 0 or more, got {count}."
        )
    if keras.backend.backend() == "jax":
        import jax

        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError as error:
            found = len(jax.devices("cpu"))
            if found != count:
                raise DistributionError(
                    f"--virtual_devices={count}: JAX has already started "
                    f"with {found} CPU devices ({error})."
                ) from error
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError as error:
        found = len(tf.config.list_logical_devices("CPU"))
        if found != count:
            raise DistributionError(
                f"--virtual_devices={count}: TensorFlow has already started "
                f"with {found} CPU devices ({error})."
            ) from error


def get_strategy(name="auto", virtual_devices=0):
    """The strategy (TensorFlow) or distribution (JAX) named `name`.

    Returns:
        An object with `scope()` (model building and compile happen in it)
        and `num_replicas_in_sync`: a `tf.distribute.Strategy`, or on JAX a
        `JaxDistribution`.

    Raises:
        DistributionError: an unknown name, a strategy of the other
            backend, `tpu` without a TPU, `multi_worker` without a valid
            `TF_CONFIG`.
    """
    if name not in STRATEGIES:
        raise DistributionError(
            f"Unknown --strategy={name!r}; valid: {', '.join(STRATEGIES)}."
        )
    set_virtual_devices(virtual_devices)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tf_strategy(name)
    if name in TF_STRATEGIES:
        raise DistributionError(
            f"--strategy={name} is a tf.distribute strategy and needs the "
            f"TensorFlow backend; the active backend is {backend!r}. On JAX "
            f"use {' or '.join(JAX_STRATEGIES)}."
        )
    return _jax_distribution(name)


def _tf_strategy(name):
    import tensorflow as tf

    if name in JAX_STRATEGIES:
        raise DistributionError(
            f"--strategy={name} uses keras.distribution, which runs on the "
            "JAX backend (KERAS_BACKEND=jax); the active backend is "
            f"'tensorflow'. On TensorFlow use {', '.join(TF_STRATEGIES)}."
        )
    from experiments.common import keras_fixes

    if name == "multi_worker":
        # first: its collectives are set up before TensorFlow starts
        check_tf_config(os.environ.get("TF_CONFIG"))
        keras_fixes.patch()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        keras_fixes.patch()
        devices = tf.config.list_logical_devices("GPU" if gpus else "CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "tpu":
        keras_fixes.patch()
        return _tpu_strategy()
    return tf.distribute.get_strategy()


def _tpu_strategy():
    import tensorflow as tf

    # TPU_NAME names a remote TPU; a TPU VM (Colab's TPU runtime) has its
    # chips on this host ("local"); "" reads Colab's older COLAB_TPU_ADDR
    local = glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*")
    tpu = os.environ.get("TPU_NAME", "local" if local else "")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise DistributionError(
            "--strategy=tpu found no TPU. On Colab choose Runtime > Change "
            "runtime type > TPU; elsewhere set TPU_NAME to the TPU's name "
            f"or address. ({type(error).__name__}: {error})"
        ) from error
    return tf.distribute.TPUStrategy(resolver)


def check_tf_config(value):
    """Raises unless `value` (the TF_CONFIG variable) describes a cluster
    with this process's place in it."""
    example = (
        '{"cluster": {"worker": ["host0:port", "host1:port"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    if not value:
        raise DistributionError(
            "--strategy=multi_worker needs TF_CONFIG in each worker's "
            f"environment, e.g. {example} (index 1 on the second machine); "
            "TF_CONFIG is not set."
        )
    try:
        config = json.loads(value)
    except json.JSONDecodeError as error:
        raise DistributionError(
            f"TF_CONFIG is not JSON ({error}): {value!r}. Expected e.g. "
            f"{example}."
        ) from error
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise DistributionError(
            f"TF_CONFIG needs a 'cluster' and a 'task'; got {value!r}. "
            f"Expected e.g. {example}."
        )
    members = cluster.get(task.get("type"))
    index = task.get("index")
    if (
        not isinstance(members, list)
        or not isinstance(index, int)
        or not 0 <= index < len(members)
    ):
        raise DistributionError(
            f"TF_CONFIG's task {task!r} is not a member of its cluster "
            f"{cluster!r}: 'type' must name a list of addresses there and "
            "'index' a position in it."
        )


def is_chief():
    """Whether this process writes a run's results: always, except the
    workers of a multi-worker cluster other than its chief (the task of
    type "chief", or else worker 0)."""
    value = os.environ.get("TF_CONFIG")
    if not value:
        return True
    config = json.loads(value)
    task = config.get("task", {})
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index") == 0


def uses_collectives(strategy):
    """Whether `strategy` spans several replicas across devices whose
    collectives TensorFlow cannot XLA-compile (all but TPUs)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return strategy.num_replicas_in_sync > 1 and not isinstance(
        strategy, tf.distribute.TPUStrategy
    )


def check_batch_size(batch_size, strategy):
    """Raises unless the global batch splits evenly across the replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise DistributionError(
            f"--batch_size={batch_size} is the global batch, split across "
            f"{replicas} replicas, and must be a multiple of {replicas} "
            f"(e.g. {replicas * max(1, round(batch_size / replicas))})."
        )


class JaxDistribution:
    """A `keras.distribution` distribution (or none) behind the interface
    of a `tf.distribute.Strategy` that the training loop uses."""

    def __init__(self, distribution=None, num_replicas=1):
        self.distribution = distribution
        self.num_replicas_in_sync = num_replicas

    def scope(self):
        if self.distribution is None:
            return contextlib.nullcontext()
        return self.distribution.scope()


def model_parallel_layout(device_mesh):
    """The `LayoutMap` of `--strategy=model_parallel` on `device_mesh`."""
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for pattern, axes in MODEL_PARALLEL_LAYOUT:
        layout_map[pattern] = axes
    return layout_map


def _jax_distribution(name):
    devices = keras.distribution.list_devices()
    if name == "auto":
        name = "data_parallel" if len(devices) > 1 else "default"
    if name == "default":
        return JaxDistribution()
    if name == "data_parallel":
        distribution = keras.distribution.DataParallel(devices=devices)
        return JaxDistribution(distribution, len(devices))
    mesh = keras.distribution.DeviceMesh(
        shape=(1, len(devices)), axis_names=("batch", "model"), devices=devices
    )
    distribution = keras.distribution.ModelParallel(
        layout_map=model_parallel_layout(mesh), batch_dim_name="batch"
    )
    return JaxDistribution(distribution, 1)
