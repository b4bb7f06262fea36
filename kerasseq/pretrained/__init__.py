"""Converters from Hugging Face checkpoints to kerasseq models."""

from kerasseq.pretrained.from_checkpoint import build_from_checkpoint
from kerasseq.pretrained.from_checkpoint import check_checkpoint
from kerasseq.pretrained.from_checkpoint import check_model_type
from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import from_hf
from kerasseq.pretrained.hf import read_checkpoint
