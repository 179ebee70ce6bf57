"""Networks and the one trainer: where to add a model.

* :mod:`.models` - the model registry :data:`~spuriouslab.nets.models.MODELS` (add a model: one entry) and
  :class:`SeedEnsemble`, which trains several seeds of any model as one ``vmap``'d computation;
* :mod:`.vit` - :class:`ViT`, a small Vision Transformer in plain torch (the registry's ``vit`` and
  ``vit-encoder``);
* :mod:`.mlp` - :class:`StackedMLP`, MLPs stacked over seeds (one batched computation for many seeds);
* :mod:`.train` - :class:`TrainState` and :func:`fit` (the one trainer), the minibatch sampler, chunked
  evaluation, losses and optimizers;
* :mod:`.phases` - :func:`run_phases`, the phases a remedy asks for (pre-training, linear probing, the task) around
  the trainer, for any model; :mod:`.remedies` - the remedy registry (add a remedy: one entry).

Activations come from :mod:`spuriouslab.activations`.
"""

from spuriouslab.nets.mlp import StackedMLP
from spuriouslab.nets.models import SeedEnsemble, build_model
from spuriouslab.nets.phases import Phase, Phases, run_phases
from spuriouslab.nets.train import LOSSES, Minibatches, TrainState, evaluate, fit, make_optimizer
from spuriouslab.nets.vit import ViT

__all__ = [
    "LOSSES",
    "Minibatches",
    "Phase",
    "Phases",
    "SeedEnsemble",
    "StackedMLP",
    "TrainState",
    "ViT",
    "build_model",
    "evaluate",
    "fit",
    "make_optimizer",
    "run_phases",
]
