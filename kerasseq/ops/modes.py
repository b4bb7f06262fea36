"""Each op's modes, and what `mode="auto"` picks per device and length.

The one table of modes. The ops validate `mode` and resolve `"auto"` here;
layers validate their `mode` argument against `MODES[op]`. The measurements
behind each rule are in README.md beside this file ("Modes and `auto`").

    recurrent  a compiled loop over time carrying the state
    chunk      chunkwise-parallel: matmuls or log-depth scans inside chunks
               of `chunk_size` steps, a recurrence across chunks
    parallel   no loop over time: a log-depth scan, or a masked quadratic
               form for attention
"""

from kerasseq.ops import checks
from kerasseq.ops import dispatch

MODES = {
    "linear_recurrence": ("auto", "recurrent", "chunk", "parallel"),
    "selective_scan": ("auto", "recurrent", "chunk", "parallel"),
    "delta_rule": ("auto", "recurrent", "chunk"),
    "linear_attention": ("auto", "recurrent", "chunk", "parallel"),
    "matrix_recurrence": ("auto", "recurrent"),
    "lstm_recurrence": ("auto", "recurrent"),
}


def _loop_on_cpu(length, chunk_size):
    # the compiled loop on a CPU; the chunked form fills a GPU or TPU
    del length, chunk_size
    return "recurrent" if dispatch.device_kind() == "cpu" else "chunk"


def _chunk(length, chunk_size):
    del length, chunk_size
    return "chunk"


def _parallel_within_a_chunk(length, chunk_size):
    return "parallel" if length <= chunk_size else "chunk"


def _recurrent(length, chunk_size):
    # the only form: a nonlinear or dense-matrix step has no parallel scan
    del length, chunk_size
    return "recurrent"


AUTO = {
    "linear_recurrence": _loop_on_cpu,
    "selective_scan": _loop_on_cpu,
    "delta_rule": _chunk,
    "linear_attention": _parallel_within_a_chunk,
    "matrix_recurrence": _recurrent,
    "lstm_recurrence": _recurrent,
}


def check(op, mode):
    """Raises `ValueError` unless `mode` is one of `MODES[op]`."""
    checks.check_choice("mode", mode, MODES[op])


def resolve(op, mode, length=None, chunk_size=None):
    """Checks `mode` for `op` and returns the mode to run.

    Args:
        op: the op's name, a key of `MODES`.
        mode: the requested mode.
        length: T, the sequence length (static).
        chunk_size: the op's `chunk_size`, where it has one.

    Returns:
        `mode`, or for `"auto"` what `AUTO[op]` picks on this device.

    Raises:
        ValueError: `mode` is not one of `MODES[op]`.
    """
    check(op, mode)
    if mode != "auto":
        return mode
    return AUTO[op](length, chunk_size)


def chunk_layout():
    """How the delta rule's chunk mode organises its work on this device.

    `"loop"` (CPU): each chunk's work inside one loop step, its operands in
    cache. `"batched"` (GPU, TPU): the state-free work batched over all
    chunks, only the state recurrence in a loop. Same arithmetic.
    """
    return "loop" if dispatch.device_kind() == "cpu" else "batched"
