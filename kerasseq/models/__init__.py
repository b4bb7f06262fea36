"""Backbone, task heads, the model registry and its presets."""

from kerasseq.models.architectures.recurrent_gpt2 import RecurrentGPT2
from kerasseq.models.causal_lm import CausalLM
from kerasseq.models.dual_encoder_classifier import DualEncoderClassifier
from kerasseq.models.registry import COMPARED_MODELS
from kerasseq.models.registry import HEADS
from kerasseq.models.registry import MODEL_NAMES
from kerasseq.models.registry import MODELS
from kerasseq.models.registry import PRESETS
from kerasseq.models.registry import ModelConfig
from kerasseq.models.registry import ModelSpec
from kerasseq.models.registry import build_model
from kerasseq.models.registry import count_parameters
from kerasseq.models.registry import model_config
from kerasseq.models.registry import register_model
from kerasseq.models.sequence_backbone import SequenceBackbone
from kerasseq.models.sequence_classifier import SequenceClassifier
from kerasseq.models.span_extractor import SpanExtractor
from kerasseq.models.token_classifier import TokenClassifier
