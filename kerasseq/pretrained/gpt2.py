"""GPT-2 and DistilGPT-2 checkpoints (`model_type: "gpt2"`) as kerasseq
models.

`convert` builds the registry's `"gpt2"` architecture with the sizes of
`config.json` and fills it from the checkpoint. GPT-2 keeps its linear
layers as `Conv1D`, whose weights are `(in, out)` like Keras kernels; the
attention's `c_attn` packs queries, keys and values side by side along the
output axis, each `num_heads * head_dim` wide, head after head.

Tensor names, with the `transformer.` prefix of `GPT2LMHeadModel` (a bare
`GPT2Model`, or the original OpenAI files, have none):

    wte.weight                     (V, D)  token_embedding.embeddings
    wpe.weight                     (P, D)  position_embedding.embeddings
    h.{i}.ln_1.{weight,bias}       (D,)    blocks[i].mixer_norm
    h.{i}.attn.c_attn.weight       (D, 3D) mixer.{query,key,value}_kernel
    h.{i}.attn.c_attn.bias         (3D,)   mixer.{query,key,value}_bias
    h.{i}.attn.c_proj.weight       (D, D)  mixer.output_kernel (H, K, D)
    h.{i}.attn.c_proj.bias         (D,)    mixer.output_bias
    h.{i}.ln_2.{weight,bias}       (D,)    blocks[i].mlp_norm
    h.{i}.mlp.c_fc.{weight,bias}   (D, F)  blocks[i].mlp_in
    h.{i}.mlp.c_proj.{weight,bias} (F, D)  blocks[i].mlp_out
    ln_f.{weight,bias}             (D,)    final_norm
    lm_head.weight                 (V, D)  wte itself (may be absent), or
                                           output_embedding when
                                           tie_word_embeddings is false
"""

import numpy as np

from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import DecoderLayout
from kerasseq.pretrained.hf import config_size
from kerasseq.pretrained.hf import convert_decoder
from kerasseq.pretrained.hf import head_sizes
from kerasseq.pretrained.hf import qkv_variables
from kerasseq.pretrained.hf import same

ARCHITECTURE = "gpt2"

# activation_function in config.json -> the kerasseq MLP activation
ACTIVATIONS = {
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu": "gelu",
    "relu": "relu",
}


def _require(checkpoint, key, allowed, default):
    value = checkpoint.config.get(key, default)
    if value not in allowed:
        raise CheckpointError(
            f"{checkpoint.directory}: config.json has {key}={value!r}, "
            f"which the kerasseq GPT-2 does not support. Supported: "
            f"{', '.join(repr(v) for v in allowed)}."
        )
    return value


def model_arguments(checkpoint, task):
    """The `build_model` arguments that `config.json` fixes.

    Args:
        checkpoint: a `kerasseq.pretrained.hf.Checkpoint` of GPT-2.
        task: the kerasseq head.

    Returns:
        dict of sizes and options for `build_model("gpt2", task, ...)`.

    Raises:
        CheckpointError: a GPT-2 variant kerasseq does not build
            (another activation, unscaled or per-layer-scaled attention,
            cross-attention).
    """
    config = checkpoint.config
    activation = _require(
        checkpoint, "activation_function", tuple(ACTIVATIONS), "gelu_new"
    )
    _require(checkpoint, "scale_attn_weights", (True,), True)
    _require(checkpoint, "scale_attn_by_inverse_layer_idx", (False,), False)
    _require(checkpoint, "add_cross_attention", (False,), False)
    hidden_dim, num_heads = head_sizes(checkpoint, "n_embd", "n_head")
    intermediate_dim = config.get("n_inner") or 4 * hidden_dim
    arguments = {
        "vocabulary_size": config_size(checkpoint, "vocab_size"),
        "hidden_dim": hidden_dim,
        "num_layers": config_size(checkpoint, "n_layer"),
        "num_heads": num_heads,
        "max_sequence_length": config_size(checkpoint, "n_positions"),
        "mlp_ratio": intermediate_dim / hidden_dim,
        "layer_norm_epsilon": config.get("layer_norm_epsilon", 1e-5),
        "activation": ACTIVATIONS[activation],
    }
    arguments["dropout"] = config.get("resid_pdrop", 0.0)
    if task == "causal_lm":
        arguments["tie_embeddings"] = config.get("tie_word_embeddings", True)
    return arguments


def _block_table(block, name):
    """Rows (checkpoint tensor, its shape, kerasseq variables, function from
    the tensor to the variables' values) of one block."""
    D, H, F = block.mlp_out.units, block.mixer.num_heads, block.mlp_in.units
    K = D // H
    attention, norm1, norm2 = block.mixer, block.mixer_norm, block.mlp_norm
    mlp_in, mlp_out = block.mlp_in, block.mlp_out
    qkv_kernels, qkv_biases = qkv_variables(attention)

    def qkv(array):
        # (..., 3D) -> q, k, v, each (..., H, K)
        parts = np.split(array, 3, axis=-1)
        return [part.reshape(*part.shape[:-1], H, K) for part in parts]

    def heads_in(array):
        # (D, D), rows head after head -> (H, K, D)
        return [array.reshape(H, K, D)]

    # fmt: off
    return [
        (f"{name}.ln_1.weight", (D,), [norm1.gamma], same),
        (f"{name}.ln_1.bias", (D,), [norm1.beta], same),
        (f"{name}.attn.c_attn.weight", (D, 3 * D), qkv_kernels, qkv),
        (f"{name}.attn.c_attn.bias", (3 * D,), qkv_biases, qkv),
        (f"{name}.attn.c_proj.weight", (D, D), [attention.output_kernel],
         heads_in),
        (f"{name}.attn.c_proj.bias", (D,), [attention.output_bias], same),
        (f"{name}.ln_2.weight", (D,), [norm2.gamma], same),
        (f"{name}.ln_2.bias", (D,), [norm2.beta], same),
        (f"{name}.mlp.c_fc.weight", (D, F), [mlp_in.kernel], same),
        (f"{name}.mlp.c_fc.bias", (F,), [mlp_in.bias], same),
        (f"{name}.mlp.c_proj.weight", (F, D), [mlp_out.kernel], same),
        (f"{name}.mlp.c_proj.bias", (D,), [mlp_out.bias], same),
    ]
    # fmt: on


def _backbone_table(backbone, prefix):
    """Rows of the tensors outside the blocks."""
    V, D = backbone.vocabulary_size, backbone.hidden_dim
    P = backbone.max_sequence_length
    tokens = backbone.token_embedding.embeddings
    positions = backbone.position_embedding.embeddings
    final_norm = backbone.final_norm
    # fmt: off
    return [
        (f"{prefix}wte.weight", (V, D), [tokens], same),
        (f"{prefix}wpe.weight", (P, D), [positions], same),
        (f"{prefix}ln_f.weight", (D,), [final_norm.gamma], same),
        (f"{prefix}ln_f.bias", (D,), [final_norm.beta], same),
    ]
    # fmt: on


LAYOUT = DecoderLayout(
    architecture=ARCHITECTURE,
    name="GPT-2",
    prefixes=("transformer.", ""),
    token_embedding="wte.weight",
    blocks="h",
    lm_heads=("lm_head.weight",),
    # the causal mask some files keep beside the weights
    buffers=("attn.bias", "attn.masked_bias"),
    model_arguments=model_arguments,
    backbone_table=_backbone_table,
    block_table=_block_table,
)


def convert(checkpoint, task=None, **kwargs):
    """Builds the kerasseq GPT-2 of a checkpoint (`model_type: "gpt2"`:
    `GPT2LMHeadModel` or `GPT2Model`), with its weights. Arguments,
    result and errors as `hf.convert_decoder`; the backbone's dropout is
    the checkpoint's `resid_pdrop`."""
    return convert_decoder(checkpoint, task, kwargs, LAYOUT)
