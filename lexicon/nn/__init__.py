"""Flax Linen modules and the pure functions that models need.

Every module takes ``train: bool`` at call time where training and evaluation differ
(dropout, batch norm). The topic families are submodules: ``autoencoders``, ``vae``,
``rbm`` and ``dbn``, ``rnn``, ``gan``, ``word2vec``, ``ncf``; ``conv_matrix`` writes a
convolution as a matrix product.
"""

from lexicon.nn import autoencoders, conv_matrix, dbn, gan, ncf, rbm, rnn, vae, word2vec
from lexicon.nn.cnn import (
    CNN1D,
    FedAvgCNN,
    LeNet5,
    MultiStream,
    PoolingNet,
    ResidualBlock,
    ResNetSmall,
    VGGSmall,
    lenet5_for,
)
from lexicon.nn.conv import CONV_IMPLS, Conv, default_conv_impl, im2col_conv_general_dilated
from lexicon.nn.dropout import Dropout, DropoutMLP, mc_dropout_predict
from lexicon.nn.gan import (
    DCGANDiscriminator,
    DCGANGenerator,
    DenseDiscriminator,
    DenseGenerator,
    SpectralDense,
    spectral_norm,
)
from lexicon.nn.layers import MLP, BatchNorm, Maxout, PReLU
from lexicon.nn.ncf import GMF, NeuMF
from lexicon.nn.rnn import (
    ElmanCell,
    GRUCell,
    JordanCell,
    LSTMCell,
    SequenceToOne,
    SequenceToSequence,
)
from lexicon.nn.tying import Siamese, TiedAutoencoder

__all__ = [
    "CONV_IMPLS",
    "Conv",
    "PoolingNet",
    "SpectralDense",
    "default_conv_impl",
    "im2col_conv_general_dilated",
    "spectral_norm",
    "CNN1D",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DenseDiscriminator",
    "DenseGenerator",
    "FedAvgCNN",
    "ElmanCell",
    "GMF",
    "GRUCell",
    "JordanCell",
    "LSTMCell",
    "MLP",
    "NeuMF",
    "SequenceToOne",
    "SequenceToSequence",
    "autoencoders",
    "conv_matrix",
    "dbn",
    "gan",
    "ncf",
    "rbm",
    "rnn",
    "vae",
    "word2vec",
    "BatchNorm",
    "Dropout",
    "DropoutMLP",
    "LeNet5",
    "Maxout",
    "MultiStream",
    "PReLU",
    "ResNetSmall",
    "ResidualBlock",
    "Siamese",
    "TiedAutoencoder",
    "VGGSmall",
    "lenet5_for",
    "mc_dropout_predict",
]
