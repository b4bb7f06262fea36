"""The architectures of pretrained checkpoints (`kerasseq.pretrained`),
registered: built from scratch at the presets' sizes, or fine-tuned from a
checkpoint with `--init_from`, whose config.json then fixes sizes and
layout.

They differ from the `gpt` of `mixer_models` only in details their
checkpoints fix, so every-model comparisons leave them out
(`compared=False`). An architecture that is more than a backbone and a
task head has its model class here too (`recurrent_gpt2.RecurrentGPT2`).
"""

import dataclasses

from kerasseq.layers.softmax_attention import SoftmaxAttention

# registered first: the registry lists the comparable models, then these
from kerasseq.models import mixer_models  # noqa: F401
from kerasseq.models.architectures.recurrent_gpt2 import RecurrentGPT2
from kerasseq.models.model_spec import attention_spec
from kerasseq.models.model_spec import register_model

GPT2 = attention_spec(
    SoftmaxAttention,
    causal=True,
    mixer_args={"causal": True},
    backbone_args={"activation": "gelu_approximate"},
    checkpoints=("gpt2",),
    compared=False,
    description="GPT-2 (and DistilGPT-2): GPT with GELU's tanh approximation",
)

register_model("gpt2", GPT2)
register_model(
    "distilgpt2",
    dataclasses.replace(
        GPT2,
        description="DistilGPT-2: GPT-2's architecture (its checkpoints "
        "have 6 layers)",
    ),
)
# GPT-2's backbone inside a model class of its own, for causal LM (other
# tasks get GPT-2 with the task's head)
register_model(
    "recurrent_gpt2",
    dataclasses.replace(
        GPT2,
        head_args={"segment_length": 128},
        architecture=RecurrentGPT2,
        description="GPT-2 over segments of 128 tokens, a GRU state carried "
        "from each segment's top layer to the next one's embeddings "
        "(gated, closed at initialisation)",
    ),
)
register_model(
    "pythia",
    attention_spec(
        SoftmaxAttention,
        causal=True,
        mixer_args={"causal": True, "rotary_fraction": 0.25},
        position_embedding="none",
        backbone_args={"block_type": "parallel"},
        head_args={"tie_embeddings": False},
        checkpoints=("gpt_neox",),
        compared=False,
        description="Pythia (GPT-NeoX): parallel attention and MLP, rotary "
        "positions on a quarter of each head, untied output",
    ),
)
