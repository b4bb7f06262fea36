"""Pure tensor functions: scans and attention kernels, no weights.

README.md beside this file lists the ops, the glossary of dimension letters
they share, each op's modes and what `mode="auto"` picks (the table is
`kerasseq.ops.modes`), and the loop and backward-pass toolkit in
`kerasseq.ops.dispatch`. Readable float64 references of every op:
`kerasseq.ops.reference`.
"""

from kerasseq.ops.block_sparse_attention import block_sparse_attention
from kerasseq.ops.block_sparse_attention import random_block_plan
from kerasseq.ops.delta_rule import delta_rule
from kerasseq.ops.delta_rule import delta_rule_step
from kerasseq.ops.dispatch import compile_function
from kerasseq.ops.linear_attention import elu_plus_one
from kerasseq.ops.linear_attention import favor_plus
from kerasseq.ops.linear_attention import linear_attention
from kerasseq.ops.linear_attention import linear_attention_step
from kerasseq.ops.linear_attention import orthogonal_random_features
from kerasseq.ops.linear_attention import relu
from kerasseq.ops.linear_recurrence import linear_recurrence
from kerasseq.ops.linear_recurrence import linear_recurrence_step
from kerasseq.ops.lstm_recurrence import lstm_recurrence
from kerasseq.ops.matrix_recurrence import matrix_recurrence
from kerasseq.ops.matrix_recurrence import matrix_recurrence_step
from kerasseq.ops.selective_scan import selective_scan
from kerasseq.ops.selective_scan import selective_scan_step
from kerasseq.ops.sliding_window_attention import sliding_window_attention
