"""How `benchmark accelerator` times a call, on both sides: kerasseq's
(JAX) and the peers' (PyTorch, `gpu_kernels.py`). Standard library only,
so that a peer's Python without kerasseq imports it."""

import math
import statistics
import time

SAMPLE_SECONDS = 0.02  # each timed sample lasts about this long


def timed(call, sync, repeats):
    """`(median seconds per call, first call's seconds)`.

    The first call compiles (XLA) or autotunes (Triton) and is timed apart;
    a second sets how many calls make a sample of about `SAMPLE_SECONDS`;
    each of `repeats` samples runs `call` that many times back to back, then
    `sync(last output)` waits for the device.
    """
    start = time.perf_counter()
    sync(call())
    first = time.perf_counter() - start
    start = time.perf_counter()
    sync(call())
    once = time.perf_counter() - start
    inner = max(1, min(1000, math.ceil(SAMPLE_SECONDS / max(once, 1e-6))))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            out = call()
        sync(out)
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples), first
