"""Hugging Face Mamba checkpoints (`model_type: "mamba"`) as kerasseq models.

A Hugging Face Mamba block is `x + mixer(rms_norm(x))`, without an MLP;
the stack ends in an RMS norm (`norm_f`), and the logits use the token
embedding table (`lm_head`, tied unless `tie_word_embeddings` is false).
That is the registered `mamba` model with `mlp_ratio=0`,
`normalization="rms_norm"` and no position embedding, and each mixer is a
`kerasseq.layers.Mamba` whose weights are the checkpoint's one to one:

    checkpoint (prefix `backbone.`, or none  kerasseq
    for a `MambaModel`)
    embeddings.weight        (V, H)         token_embedding (V, H)
    layers.{i}.norm.weight   (H,)           block_{i}.mixer_norm (H,)
    layers.{i}.mixer.
        in_proj.weight       (2I, H)        mixer.in_proj kernel (H, 2I)
        in_proj.bias         (2I,)          (with use_bias)
        conv1d.weight        (I, 1, K)      mixer.conv1d_kernel (K, I)
        conv1d.bias          (I,)           mixer.conv1d_bias (use_conv_bias)
        x_proj.weight        (R + 2N, I)    mixer.x_proj kernel (I, R + 2N)
        dt_proj.weight       (I, R)         mixer.dt_proj kernel (R, I)
        dt_proj.bias         (I,)           mixer.dt_proj bias
        A_log                (I, N)         mixer.A_log (A = -exp(A_log))
        D                    (I,)           mixer.D
        out_proj.weight      (H, I)         mixer.out_proj kernel (I, H)
        out_proj.bias        (H,)           (with use_bias)
    norm_f.weight            (H,)           final_norm (H,)
    lm_head.weight           (V, H)         the token table when tied,
                                            else output_embedding

Both compute the same thing term by term: `in_proj` splits into the
branch `x` and the gate `z` in that order; the convolution is causal
(left padding of K - 1, as `Conv1d(padding=K - 1)` truncated to the
sequence); `x_proj` yields `dt`, `B`, `C` in that order; the step size is
`softplus(dt_proj(dt))` with the bias inside the softplus; the output is
gated by `silu(z)`; both RMS norms use `x * rsqrt(mean(x^2) + eps)`.

Settings that only shape the initialisation (`time_step_min`,
`time_step_max`, `time_step_floor`, `time_step_scale`,
`time_step_init_scheme`, `initializer_range`, `rescale_prenorm_residual`)
and the choice of kernels (`use_mambapy`, `use_associative_scan`) do not
change the model and are not read. `residual_in_fp32` keeps Hugging
Face's residual stream in float32 under half precision; kerasseq's runs
in the compute dtype, which is the same thing in float32.
"""

import keras
import numpy as np

from kerasseq.models.registry import HEADS
from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import assign
from kerasseq.pretrained.hf import build_checked

# the prefix of MambaForCausalLM's backbone tensors (MambaModel has none)
PREFIX = "backbone."


def _config_value(checkpoint, key):
    value = checkpoint.config.get(key)
    if value is None:
        raise CheckpointError(
            f"{checkpoint.directory}/config.json has no {key!r}, which a "
            "Mamba checkpoint needs."
        )
    return value


def _check_supported(checkpoint):
    config = checkpoint.config
    act = config.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise CheckpointError(
            f"{checkpoint.directory}: hidden_act={act!r}, but "
            "kerasseq.layers.Mamba gates and activates with SiLU only "
            "(hidden_act 'silu')."
        )


def _load_dense(checkpoint, name, dense):
    """A Linear `name` (weight `(out, in)`, bias) into Keras `dense`."""
    kernel = dense.kernel
    weight = checkpoint.take(f"{name}.weight", kernel.shape[::-1])
    assign(kernel, weight.T, f"{name}.weight")
    if dense.bias is not None:
        bias = checkpoint.take(f"{name}.bias", dense.bias.shape)
        assign(dense.bias, bias, f"{name}.bias")


def _load_vector(checkpoint, name, variable):
    assign(variable, checkpoint.take(name, variable.shape), name)


def _load_mixer(checkpoint, name, mixer):
    _load_dense(checkpoint, f"{name}.in_proj", mixer.in_proj)
    kernel_size, inner = mixer.conv1d_kernel.shape
    conv = checkpoint.take(f"{name}.conv1d.weight", (inner, 1, kernel_size))
    assign(mixer.conv1d_kernel, conv[:, 0, :].T, f"{name}.conv1d.weight")
    if mixer.conv1d_bias is not None:
        _load_vector(checkpoint, f"{name}.conv1d.bias", mixer.conv1d_bias)
    _load_dense(checkpoint, f"{name}.x_proj", mixer.x_proj)
    _load_dense(checkpoint, f"{name}.dt_proj", mixer.dt_proj)
    _load_vector(checkpoint, f"{name}.A_log", mixer.A_log)
    _load_vector(checkpoint, f"{name}.D", mixer.D)
    _load_dense(checkpoint, f"{name}.out_proj", mixer.out_proj)


def _is_prefixed(name):
    return name.startswith(PREFIX)


def _embedding_name(checkpoint, prefix):
    # early exports name the table `embedding` (Hugging Face renames it
    # on loading)
    legacy = f"{prefix}embedding.weight"
    modern = f"{prefix}embeddings.weight"
    if checkpoint.has(legacy) and not checkpoint.has(modern):
        return legacy
    return modern


def _load_output_table(checkpoint, model, tied):
    """`lm_head.weight`: the token table (checked equal when a tied
    checkpoint stores it anyway), or the untied output table."""
    backbone = model.backbone
    table = backbone.token_embedding.embeddings
    if not tied:
        _load_vector(
            checkpoint, "lm_head.weight", model.output_embedding.embeddings
        )
        return
    if checkpoint.has("lm_head.weight"):
        head = checkpoint.take("lm_head.weight", table.shape)
        if not np.array_equal(head, keras.ops.convert_to_numpy(table)):
            raise CheckpointError(
                f"{checkpoint.directory}: config.json ties the output "
                "embedding to the input one (tie_word_embeddings true), "
                "but lm_head.weight differs from the embeddings. Set "
                "tie_word_embeddings to false to load it untied."
            )


def model_arguments(checkpoint, task):
    """The `build_model("mamba", task, ...)` arguments config.json fixes.

    Raises:
        CheckpointError: a setting kerasseq's Mamba cannot represent.
    """
    _check_supported(checkpoint)
    config = checkpoint.config
    hidden_dim = _config_value(checkpoint, "hidden_size")
    tied = bool(config.get("tie_word_embeddings", True))
    fixed = {
        "num_layers": _config_value(checkpoint, "num_hidden_layers"),
        "hidden_dim": hidden_dim,
        "vocabulary_size": _config_value(checkpoint, "vocab_size"),
        "position_embedding": "none",
        "mlp_ratio": 0,
        "layer_norm_epsilon": config.get("layer_norm_epsilon", 1e-5),
        "block_type": "pre_norm",
        "normalization": "rms_norm",
        "embedding_norm": False,
        "final_norm": True,
        "state_size": _config_value(checkpoint, "state_size"),
        "conv_kernel": config.get("conv_kernel", 4),
        "expand": config.get("expand", 2),
        # "auto" in config.json: ceil(H / 16), as kerasseq's "auto"
        "dt_rank": config.get("time_step_rank", "auto"),
        "use_bias": bool(config.get("use_bias", False)),
        "use_conv_bias": bool(config.get("use_conv_bias", True)),
    }
    if task == "causal_lm":
        fixed["tie_embeddings"] = tied
    return fixed


def convert(checkpoint, task=None, **head_args):
    """Builds the kerasseq `mamba` model of a Hugging Face Mamba checkpoint.

    Args:
        checkpoint: a `kerasseq.pretrained.hf.Checkpoint` whose config.json
            has `model_type: "mamba"` (`MambaForCausalLM` or `MambaModel`).
        task: a kerasseq head; `None` (the default) is `"causal_lm"`, the
            checkpoint's own. Other heads (`"sequence_classification"`,
            ...) are new and initialised afresh over the loaded backbone;
            the checkpoint's `lm_head` is then left out.
        **head_args: the head's arguments, as the head takes them
            (`num_classes`, `pooling`, `dropout`: the head's), and
            options that leave the weights as they are (`dtype`, the
            mixer's scan `mode` and `chunk_size`). `tie_embeddings`
            comes from config.json.

    Returns:
        The task model (a `keras.Model`) with the checkpoint's weights.

    Raises:
        CheckpointError: a tensor missing, misshapen or left over, or a
            setting kerasseq's Mamba cannot represent.

    Example:

    >>> model = kerasseq.pretrained.from_hf(  # doctest: +SKIP
    ...     "state-spaces/mamba-130m-hf")
    >>> model.generate(token_ids, max_new_tokens=20)  # doctest: +SKIP
    """
    task = "causal_lm" if task is None else task
    if task not in HEADS:
        raise CheckpointError(
            f"Unknown task {task!r} for a Mamba checkpoint. Valid tasks: "
            f"{', '.join(sorted(HEADS))} (or None for 'causal_lm')."
        )
    fixed = model_arguments(checkpoint, task)
    model = build_checked(checkpoint, "mamba", task, fixed, head_args)
    backbone = model.backbone

    prefix = PREFIX if any(map(_is_prefixed, checkpoint.weights)) else ""
    embeddings = backbone.token_embedding.embeddings
    name = _embedding_name(checkpoint, prefix)
    _load_vector(checkpoint, name, embeddings)
    for i, block in enumerate(backbone.blocks):
        layer = f"{prefix}layers.{i}"
        _load_vector(checkpoint, f"{layer}.norm.weight", block.mixer_norm.scale)
        _load_mixer(checkpoint, f"{layer}.mixer", block.mixer)
    _load_vector(
        checkpoint, f"{prefix}norm_f.weight", backbone.final_norm.scale
    )
    if task == "causal_lm":
        tied = fixed["tie_embeddings"]
        _load_output_table(checkpoint, model, tied)
    elif checkpoint.has("lm_head.weight"):
        # a new head replaces the language-model head
        checkpoint.take("lm_head.weight")
    checkpoint.check_all_used()
    return model
