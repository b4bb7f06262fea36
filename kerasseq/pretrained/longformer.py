"""Hugging Face Longformer encoders (`model_type: "longformer"`) as
kerasseq's registered `longformer` model.

A Longformer checkpoint is RoBERTa with Longformer self-attention: the
same embeddings (positions numbered from `pad_token_id + 1`, see
`bert.py`), the same post-norm blocks, and in each layer's
`attention.self` three more projections, `query_global`, `key_global` and
`value_global`, which map onto `LongformerAttention`'s weights of the
same names:

    checkpoint (prefix `longformer.` in task checkpoints)   kerasseq
    encoder.layer.{i}.attention.self.
        query / key / value                         mixer.{query,key,value}
        query_global / key_global / value_global    mixer.{...}_global
    everything else                                 as for RoBERTa (bert.py)

Attention, and where it is exact:

- Window: `attention_window` is the two-sided window (`attention_window
  // 2` tokens on each side), which is `LongformerAttention`'s `window`
  when bidirectional. kerasseq gives every layer the same window, so a
  checkpoint whose layers have different windows is refused.
- Global tokens: in both, a global token's row attends every real token
  with the global projections (query, key and value), every token attends
  the global tokens' local keys and values in the same softmax as its
  window, and global positions are taken out of the windows. kerasseq's
  layer has a static number of global slots (`num_global_tokens`, default
  1), and without a `global_mask` the first positions are global: that is
  transformers' `global_attention_mask` with the first token (`<s>`)
  marked, as for classification. The backbone passes no `global_mask`, so
  other global patterns (e.g. question tokens) are not represented by
  `SequenceBackbone` calls.
- With `num_global_tokens=0` the global projections are read and left
  out: exact for inputs without global tokens.
- Transformers pads the input to a multiple of `attention_window`; the
  padding is masked, so it does not change the outputs at real tokens.

The pooler and task heads are left out, as for BERT (see `bert.py`).
"""

from kerasseq.pretrained import bert
from kerasseq.pretrained.hf import CheckpointError
from kerasseq.pretrained.hf import assign

PREFIX = "longformer."
GLOBAL_PARTS = ("query_global", "key_global", "value_global")
IGNORED = bert.IGNORED


def _window(checkpoint):
    where = f"{checkpoint.directory}/config.json"
    window = checkpoint.config.get("attention_window")
    if window is None:
        raise CheckpointError(f"{where} has no 'attention_window'.")
    layers = checkpoint.config.get("num_hidden_layers")
    windows = window if isinstance(window, (list, tuple)) else [window]
    if isinstance(window, (list, tuple)) and len(window) != layers:
        raise CheckpointError(
            f"{where}: attention_window has {len(window)} entries for "
            f"{layers} layers."
        )
    if len(set(windows)) != 1:
        raise CheckpointError(
            f"{where}: attention_window={window} differs between layers; "
            "kerasseq's longformer gives every layer the same window."
        )
    window = windows[0]
    if window <= 0 or window % 2:
        raise CheckpointError(
            f"{where}: attention_window={window} is not a positive even "
            "number (the two-sided window)."
        )
    return window


def load_global(checkpoint, name, mixer, source=None):
    """The global projections of `mixer` from `{name}.self.{part}_global`,
    or, with `source="local"`, from the local `query`, `key`, `value` (a
    warm start). Without global weights in `mixer` (num_global_tokens=0)
    the tensors are read and left out."""
    hidden_dim, heads, head_dim = mixer.query_kernel.shape
    width = heads * head_dim
    has_global = mixer.num_global_tokens > 0
    for part in GLOBAL_PARTS:
        local = part[: -len("_global")]
        tensor = f"{name}.self.{local if source == 'local' else part}"
        if source == "local":
            # already taken by the local projection
            weight = checkpoint.weights[f"{tensor}.weight"]
            bias = checkpoint.weights[f"{tensor}.bias"]
        else:
            weight = checkpoint.take(f"{tensor}.weight", (width, hidden_dim))
            bias = checkpoint.take(f"{tensor}.bias", (width,))
        if not has_global:
            continue
        kernel = weight.T.reshape(hidden_dim, heads, head_dim)
        assign(getattr(mixer, f"{part}_kernel"), kernel, f"{tensor}.weight")
        bias = bias.reshape(heads, head_dim)
        assign(getattr(mixer, f"{part}_bias"), bias, f"{tensor}.bias")


def _load_attention(checkpoint, name, mixer):
    bert.load_attention(checkpoint, name, mixer)
    load_global(checkpoint, name, mixer)


def model_arguments(checkpoint, task):
    """The `build_model("longformer", task, ...)` arguments config.json
    fixes: the encoder's and the attention window."""
    del task
    fixed = bert.encoder_settings(checkpoint)[0]
    fixed["window"] = _window(checkpoint)
    return fixed


def convert(checkpoint, task=None, num_global_tokens=1, **head_args):
    """Builds kerasseq's `longformer` from a Longformer checkpoint.

    Args:
        checkpoint: a `kerasseq.pretrained.hf.Checkpoint` with `model_type`
            `"longformer"` (`LongformerModel` or a task checkpoint, whose
            head is left out).
        task: `None` for the `SequenceBackbone`, or a kerasseq head
            initialised afresh (see `bert.convert`).
        num_global_tokens: global slots per sequence (the first tokens are
            global); 0 for windows alone.
        **head_args: the head's arguments, as in `bert.convert`.

    Returns:
        The backbone, or the task model, with the checkpoint's weights.

    Raises:
        CheckpointError: a tensor missing, misshapen or left over, or a
            setting kerasseq cannot represent (windows that differ between
            layers, an odd window, relative positions).
    """
    bert.check_encoder(checkpoint, ("longformer",), task)
    fixed = model_arguments(checkpoint, task)
    offset = bert.position_offset(checkpoint)
    mixer_args = {"num_global_tokens": num_global_tokens}
    model = bert.build(
        checkpoint, "longformer", task, fixed, head_args, mixer_args
    )
    prefix = bert.encoder_prefix(checkpoint, PREFIX)
    bert.load_encoder(
        checkpoint,
        prefix,
        model.backbone,
        offset,
        attention_loader=_load_attention,
    )
    bert.drop_heads(checkpoint, prefix)
    checkpoint.check_all_used(ignore=IGNORED)
    return model.backbone if task is None else model
