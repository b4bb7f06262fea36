"""The comparable models: one per token mixer, at matched sizes.

Presets fix `hidden_dim` and `num_layers` for all models; each spec adjusts
its MLP width (and mixer arguments) so that the parameters outside the
embeddings agree within 10% across models at every preset. For example the
LSTM mixer has 8 d^2 weights where attention has 4 d^2, so the LSTM model
uses an MLP of ratio 2 where GPT uses 4: both blocks hold about 12 d^2.
"""

from kerasseq.layers.bigbird_attention import BigBirdAttention
from kerasseq.layers.deltanet import DeltaNet
from kerasseq.layers.linear_attention import LinearAttention
from kerasseq.layers.linear_rnn import DiagonalRNN
from kerasseq.layers.linear_rnn import LinearRNN
from kerasseq.layers.linformer_attention import LinformerAttention
from kerasseq.layers.longformer_attention import LongformerAttention
from kerasseq.layers.lru import LRU
from kerasseq.layers.lstm import LSTM
from kerasseq.layers.mamba import Mamba
from kerasseq.layers.performer_attention import PerformerAttention
from kerasseq.layers.quasi_lstm import QuasiLSTM
from kerasseq.layers.softmax_attention import SoftmaxAttention
from kerasseq.models.model_spec import ModelSpec
from kerasseq.models.model_spec import attention_spec
from kerasseq.models.model_spec import register_model

register_model(
    "gpt",
    attention_spec(
        SoftmaxAttention,
        causal=True,
        mixer_args={"causal": True},
        description="GPT-style Transformer: causal softmax attention",
    ),
)
register_model(
    "transformer",
    attention_spec(
        SoftmaxAttention,
        causal=False,
        mixer_args={"causal": False},
        # its checkpoints are post-norm, with a norm on the embeddings
        checkpoints=("bert", "roberta"),
        description="BERT-style Transformer: bidirectional softmax attention",
    ),
)
register_model(
    "lstm",
    ModelSpec(
        LSTM,
        causal=True,
        mlp_ratio=2,
        description="LSTM (keras.layers.LSTM) blocks",
    ),
)

register_model(
    "mamba",
    ModelSpec(
        Mamba,
        mixer_args={"state_size": 16, "expand": 2},
        causal=True,
        # the Mamba mixer holds about 7 d^2 weights; an MLP of ratio 2.5
        # brings a block within 7% of GPT's at every preset
        mlp_ratio=2.5,
        # its checkpoints have RMS norms and no MLP
        checkpoints=("mamba",),
        description="Mamba-1 selective state-space blocks",
    ),
)

register_model(
    "linear_attention",
    attention_spec(
        LinearAttention,
        causal=True,
        mixer_args={"causal": True},
        description="Linear Transformer: causal elu+1 linear attention",
    ),
)

register_model(
    "bidirectional_linear_attention",
    attention_spec(
        LinearAttention,
        causal=False,
        mixer_args={"causal": False},
        description="Linear Transformer encoder: bidirectional elu+1 linear "
        "attention, for classification",
    ),
)

register_model(
    "qlstm",
    ModelSpec(
        QuasiLSTM,
        causal=True,
        # 4 d^2 gate weights, so the MLP of GPT (8 d^2) makes 12 d^2
        mlp_ratio=4,
        description="Quasi-LSTM: input-only gates, parallel cell recurrence",
    ),
)

register_model(
    "linear_rnn",
    ModelSpec(
        LinearRNN,
        # halved Glorot: defined at every state size (the paper's 'fixed'
        # needs N >= 166; pass A_init='fixed' at the base preset)
        mixer_args={"A_init": "rescaled_glorot"},
        causal=True,
        # A, B, C and the GLU hold 5 d^2; an MLP of ratio 3.5 adds 7 d^2
        mlp_ratio=3.5,
        description="Linear RNN with a dense transition (rescaled Glorot)",
    ),
)

register_model(
    "diag_rnn",
    ModelSpec(
        DiagonalRNN,
        mixer_args={"A_init": "rescaled_glorot"},
        causal=True,
        # complex B and C and the GLU hold 6 d^2; an MLP of ratio 3 adds 6
        mlp_ratio=3,
        description="Linear RNN with a complex diagonal transition",
    ),
)

register_model(
    "lru",
    ModelSpec(
        LRU,
        causal=True,
        # complex B and C (4 d^2) and the GLU (2 d^2); an MLP of ratio 3
        # adds 6 d^2
        mlp_ratio=3,
        description="Linear Recurrent Unit (Orvieto et al.) with its GLU",
    ),
)

# heads of 32 (tiny and small) and 64 (base) dimensions: the delta-rule
# state is head_dim^2 per head
DELTANET_HEADS = {
    "tiny": {"num_heads": 2},
    "small": {"num_heads": 4},
    "base": {"num_heads": 8},
}

register_model(
    "deltanet",
    ModelSpec(
        DeltaNet,
        preset_args=DELTANET_HEADS,
        causal=True,
        # q, k, v, gate and output projections hold 5 d^2; an MLP of
        # ratio 3.5 adds 7 d^2
        mlp_ratio=3.5,
        description="DeltaNet: delta-rule linear attention, short convs",
    ),
)

register_model(
    "deltanet_negeig",
    ModelSpec(
        DeltaNet,
        mixer_args={"allow_neg_eigval": True},
        preset_args=DELTANET_HEADS,
        causal=True,
        mlp_ratio=3.5,
        description="DeltaNet with beta in [0, 2]: negative eigenvalues "
        "(Grazzi et al. 2024), for state tracking such as parity",
    ),
)

# efficient Transformers: GPT's blocks with another attention; the
# bidirectional ones are the encoders of the Long Range Arena

register_model(
    "linformer",
    attention_spec(
        LinformerAttention,
        causal=False,
        # one E for keys and values of every head and layer; E grows with
        # max_sequence_length and counts, like position tables, as an
        # embedding (see count_parameters)
        # (projected_length: the layer's min(256, max_sequence_length))
        mixer_args={"sharing": "layerwise"},
        description="Linformer encoder: keys and values projected to k rows "
        "along the sequence",
    ),
)

register_model(
    "bigbird",
    attention_spec(
        BigBirdAttention,
        causal=False,
        # the reference's blocks: 64 tokens, first and last global, 3
        # random; full attention up to (3 + 2 + 2 * 3) * 64 = 704 tokens
        mixer_args={
            "block_size": 64,
            "num_global_blocks": 2,
            "num_random_blocks": 3,
        },
        checkpoints=("big_bird",),
        warm_starts=("bert", "roberta"),
        description="BigBird encoder: block-sparse attention (window, "
        "global and random blocks)",
    ),
)

register_model(
    "longformer",
    attention_spec(
        LongformerAttention,
        causal=False,
        # 128 tokens on each side; the first token is global (a CLS token
        # that reads and is read by the whole sequence)
        mixer_args={"window": 256, "num_global_tokens": 1},
        # local and global projections hold 7 d^2; an MLP of ratio 2.5
        # adds 5 d^2, GPT's 12 d^2 in all
        mlp_ratio=2.5,
        checkpoints=("longformer",),
        warm_starts=("bert", "roberta"),
        description="Longformer encoder: sliding-window attention and a "
        "global first token",
    ),
)

register_model(
    "longformer_causal",
    attention_spec(
        LongformerAttention,
        causal=True,
        mixer_args={"window": 256, "causal": True},
        description="Causal Longformer: each token attends the 256 before it",
    ),
)

register_model(
    "performer",
    attention_spec(
        PerformerAttention,
        causal=False,
        mixer_args={"causal": False},
        description="Performer encoder: FAVOR+ estimate of softmax attention",
    ),
)

register_model(
    "performer_causal",
    attention_spec(
        PerformerAttention,
        causal=True,
        mixer_args={"causal": True},
        description="Causal Performer: FAVOR+ features, prefix sums",
    ),
)
