"""GPT-NeoX and Pythia checkpoints (`model_type: "gpt_neox"`) as kerasseq
models.

`convert` builds the registry's `"pythia"` architecture with the sizes of
`config.json` and fills it from the checkpoint. GPT-NeoX's linear layers
are PyTorch `Linear`s, with weights `(out, in)`: the transpose of a Keras
kernel. The attention's `query_key_value` packs, for each head in turn,
that head's query, key and value: its output axis is `(num_heads, 3,
head_dim)`, not three blocks of `num_heads * head_dim` as GPT-2's.

Tensor names, with the `gpt_neox.` prefix of `GPTNeoXForCausalLM` (a bare
`GPTNeoXModel` has none):

    embed_in.weight                     (V, D)  token_embedding.embeddings
    layers.{i}.input_layernorm          (D,)    blocks[i].mixer_norm
    layers.{i}.attention.query_key_value.weight
                                        (3D, D) mixer.{query,key,value}_kernel
    layers.{i}.attention.query_key_value.bias
                                        (3D,)   mixer.{query,key,value}_bias
    layers.{i}.attention.dense.weight   (D, D)  mixer.output_kernel (H, K, D)
    layers.{i}.attention.dense.bias     (D,)    mixer.output_bias
    layers.{i}.post_attention_layernorm (D,)    blocks[i].mlp_norm
    layers.{i}.mlp.dense_h_to_4h        (F, D)  blocks[i].mlp_in
    layers.{i}.mlp.dense_4h_to_h        (D, F)  blocks[i].mlp_out
    final_layer_norm                    (D,)    final_norm
    embed_out.weight                    (V, D)  output_embedding.embeddings

(unprefixed `embed_out.weight`; files written by transformers 5 may call it
`lm_head.weight`).

Blocks are parallel (`use_parallel_residual`, every Pythia) or, without it,
sequential pre-norm blocks. Rotary position embedding turns the first
`rotary_pct` of each head's dimensions (`rope_parameters` in files written
by transformers 5).
"""

from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import DecoderLayout
from kerasseq.pretrained.hf import config_size
from kerasseq.pretrained.hf import convert_decoder
from kerasseq.pretrained.hf import head_sizes
from kerasseq.pretrained.hf import qkv_variables
from kerasseq.pretrained.hf import same

ARCHITECTURE = "pythia"

# hidden_act in config.json -> the kerasseq MLP activation
ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "relu": "relu",
}


def _unsupported(checkpoint, setting, allowed):
    return CheckpointError(
        f"{checkpoint.directory}: config.json has {setting}, which the "
        f"kerasseq GPT-NeoX does not support. Supported: {allowed}."
    )


def _rotary(checkpoint):
    """`(rotary_fraction, rotary_base)` from either way of writing them."""
    config = checkpoint.config
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise _unsupported(
            checkpoint, f"rope_type={rope_type!r}", "'default' (no scaling)"
        )
    fraction = rope.get("partial_rotary_factor", config.get("rotary_pct"))
    base = rope.get("rope_theta", config.get("rotary_emb_base"))
    return (
        0.25 if fraction is None else fraction,
        10000.0 if base is None else base,
    )


def model_arguments(checkpoint, task):
    """The `build_model` arguments that `config.json` fixes.

    Args:
        checkpoint: a `kerasseq.pretrained.hf.Checkpoint` of GPT-NeoX.
        task: the kerasseq head.

    Returns:
        dict of sizes and options for `build_model("pythia", task, ...)`.

    Raises:
        CheckpointError: a variant kerasseq does not build (another
            activation, scaled rotary embedding, an odd number of rotated
            dimensions).
    """
    config = checkpoint.config
    activation = config.get("hidden_act", "gelu")
    if activation not in ACTIVATIONS:
        raise _unsupported(
            checkpoint, f"hidden_act={activation!r}", sorted(ACTIVATIONS)
        )
    hidden_dim, num_heads = head_sizes(
        checkpoint, "hidden_size", "num_attention_heads"
    )
    rotary_fraction, rotary_base = _rotary(checkpoint)
    rotary_dim = int(hidden_dim // num_heads * rotary_fraction)
    if rotary_dim % 2:
        raise _unsupported(
            checkpoint,
            f"rotary_pct={rotary_fraction}, which rotates {rotary_dim} "
            f"of the {hidden_dim // num_heads} dimensions of each head",
            "an even number of rotated dimensions",
        )
    parallel = config.get("use_parallel_residual", True)
    arguments = {
        "vocabulary_size": config_size(checkpoint, "vocab_size"),
        "hidden_dim": hidden_dim,
        "num_layers": config_size(checkpoint, "num_hidden_layers"),
        "num_heads": num_heads,
        "max_sequence_length": config.get("max_position_embeddings"),
        "mlp_ratio": config_size(checkpoint, "intermediate_size") / hidden_dim,
        "layer_norm_epsilon": config.get("layer_norm_eps", 1e-5),
        "activation": ACTIVATIONS[activation],
        "rotary_fraction": rotary_fraction,
        "rotary_base": float(rotary_base),
        "use_bias": config.get("attention_bias", True),
        "block_type": "parallel" if parallel else "pre_norm",
    }
    arguments["dropout"] = config.get("hidden_dropout", 0.0)
    if task == "causal_lm":
        arguments["tie_embeddings"] = config.get("tie_word_embeddings", False)
    return arguments


def _transposed(array):
    return [array.T]


def _block_table(block, name):
    """Rows (checkpoint tensor, its shape, kerasseq variables, function from
    the tensor to the variables' values) of one block."""
    D, H, F = block.mlp_out.units, block.mixer.num_heads, block.mlp_in.units
    K = D // H
    attention, norm1, norm2 = block.mixer, block.mixer_norm, block.mlp_norm
    mlp_in, mlp_out = block.mlp_in, block.mlp_out
    qkv_kernels, qkv_biases = qkv_variables(attention)

    def qkv_kernel(array):
        # (3D, D) = (H, 3, K) x D -> q, k, v, each (D, H, K)
        array = array.T.reshape(D, H, 3, K)
        return [array[:, :, j] for j in range(3)]

    def qkv_bias(array):
        # (3D,) = (H, 3, K) -> q, k, v, each (H, K)
        array = array.reshape(H, 3, K)
        return [array[:, j] for j in range(3)]

    def heads_in(array):
        # (D, D), columns head after head -> (H, K, D)
        return [array.T.reshape(H, K, D)]

    attn = f"{name}.attention"
    # fmt: off
    table = [
        (f"{name}.input_layernorm.weight", (D,), [norm1.gamma], same),
        (f"{name}.input_layernorm.bias", (D,), [norm1.beta], same),
        (f"{attn}.query_key_value.weight", (3 * D, D), qkv_kernels,
         qkv_kernel),
        (f"{attn}.dense.weight", (D, D), [attention.output_kernel],
         heads_in),
        (f"{name}.post_attention_layernorm.weight", (D,), [norm2.gamma],
         same),
        (f"{name}.post_attention_layernorm.bias", (D,), [norm2.beta], same),
        (f"{name}.mlp.dense_h_to_4h.weight", (F, D), [mlp_in.kernel],
         _transposed),
        (f"{name}.mlp.dense_h_to_4h.bias", (F,), [mlp_in.bias], same),
        (f"{name}.mlp.dense_4h_to_h.weight", (D, F), [mlp_out.kernel],
         _transposed),
        (f"{name}.mlp.dense_4h_to_h.bias", (D,), [mlp_out.bias], same),
    ]
    if attention.use_bias:
        table += [
            (f"{attn}.query_key_value.bias", (3 * D,), qkv_biases, qkv_bias),
            (f"{attn}.dense.bias", (D,), [attention.output_bias], same),
        ]
    # fmt: on
    return table


def _backbone_table(backbone, prefix):
    """Rows of the tensors outside the blocks."""
    V, D = backbone.vocabulary_size, backbone.hidden_dim
    tokens = backbone.token_embedding.embeddings
    final_norm = backbone.final_norm
    # fmt: off
    return [
        (f"{prefix}embed_in.weight", (V, D), [tokens], same),
        (f"{prefix}final_layer_norm.weight", (D,), [final_norm.gamma],
         same),
        (f"{prefix}final_layer_norm.bias", (D,), [final_norm.beta], same),
    ]
    # fmt: on


LAYOUT = DecoderLayout(
    architecture=ARCHITECTURE,
    name="GPT-NeoX",
    prefixes=("gpt_neox.", ""),
    token_embedding="embed_in.weight",
    blocks="layers",
    lm_heads=("embed_out.weight", "lm_head.weight"),
    # causal mask and rotary frequencies some files keep beside the weights
    buffers=("attention.bias", "attention.masked_bias", "rotary_emb.inv_freq"),
    model_arguments=model_arguments,
    backbone_table=_backbone_table,
    block_table=_block_table,
)


def convert(checkpoint, task=None, **kwargs):
    """Builds the kerasseq GPT-NeoX (Pythia) of a checkpoint (`model_type:
    "gpt_neox"`: `GPTNeoXForCausalLM` or `GPTNeoXModel`), with its
    weights. Arguments, result and errors as `hf.convert_decoder`; the
    backbone's dropout is the checkpoint's `hidden_dropout` (0 for
    Pythia)."""
    return convert_decoder(checkpoint, task, kwargs, LAYOUT)
