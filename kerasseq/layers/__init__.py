"""Keras layers: token mixers (one per file) and the blocks around them."""

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
from kerasseq.layers.position_embedding import PositionEmbedding
from kerasseq.layers.quasi_lstm import QuasiLSTM
from kerasseq.layers.residual_block import ResidualBlock
from kerasseq.layers.sequence_pooling import SequencePooling
from kerasseq.layers.softmax_attention import SoftmaxAttention
from kerasseq.layers.token_embedding import TokenEmbedding
