"""Pure tensor functions: scans and attention kernels, no weights."""

from kerasseq.ops.dispatch import compile_function
