"""Networks and the one training loop: where to add a model.

* :mod:`.mlp` - :class:`StackedMLP`, MLPs stacked over seeds (one batched computation for many seeds);
* :mod:`.models` - FC, small CNN, CIFAR ResNet-18 (add a model to ``build_model``) and :class:`SeedEnsemble`,
  which trains several seeds of any model as one ``vmap``'d computation;
* :mod:`.train` - :func:`train_loop` (the single training loop), losses and optimizers.

Activations come from :mod:`spuriouslab.activations`.
"""

from spuriouslab.nets.mlp import StackedMLP
from spuriouslab.nets.models import SeedEnsemble, build_model
from spuriouslab.nets.train import LOSSES, make_optimizer, train_loop

__all__ = ["LOSSES", "SeedEnsemble", "StackedMLP", "build_model", "make_optimizer", "train_loop"]
