"""Flax Linen modules and the pure functions that models need.

Every module takes ``train: bool`` at call time where training and evaluation differ
(dropout, batch norm).
"""

from lexicon.nn.cnn import (
    CNN1D,
    LeNet5,
    MultiStream,
    ResidualBlock,
    ResNetSmall,
    VGGSmall,
    lenet5_for,
)
from lexicon.nn.dropout import Dropout, DropoutMLP, mc_dropout_predict
from lexicon.nn.layers import MLP, BatchNorm, Maxout, PReLU
from lexicon.nn.tying import Siamese, TiedAutoencoder

__all__ = [
    "CNN1D",
    "MLP",
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
