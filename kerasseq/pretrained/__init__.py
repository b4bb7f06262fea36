"""Converters from Hugging Face checkpoints to kerasseq models."""

from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import from_hf
from kerasseq.pretrained.hf import read_checkpoint
from kerasseq.pretrained.init import build_from_checkpoint
from kerasseq.pretrained.init import check_checkpoint
from kerasseq.pretrained.init import check_model_type
