"""Networks (stacked over seeds) and the single training loop."""

from spuriouslab.nets.mlp import StackedMLP
from spuriouslab.nets.train import LOSSES, make_optimizer, train_loop

__all__ = ["LOSSES", "StackedMLP", "make_optimizer", "train_loop"]
