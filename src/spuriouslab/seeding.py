"""The one seeding helper, with every random stream of the package in one table.

Every random draw in spuriouslab comes from a stream named by ``(seed, stream id)`` (plus, for random-feature
blocks, a longer key), so results never depend on the order in which things are computed, the number of
worker processes or the chunk size.  Two kinds of generator are made from a key:

* :func:`numpy_rng` - ``numpy.random.default_rng([seed, stream])`` (data: samples, picks, borders);
* :func:`torch_seed` / :func:`torch_generator` - a 63-bit seed from ``SeedSequence(key)`` (weights,
  initialisation, minibatch order).

To add a stream, give it a new id in :data:`STREAMS` (ids of one family must differ) and draw from it with these
helpers; never change an existing id, or every stored record made with it changes.
"""

from __future__ import annotations

import numpy as np
import torch

STREAMS: dict[str, int] = {
    # synthetic memorization data z = [x, y] (numpy)
    "synthetic.train": 0,
    "synthetic.test": 1,
    "synthetic.query": 2,  # fresh cores of the training samples' spurious queries
    "synthetic.teacher": 3,  # the label direction u
    "synthetic.test_query": 12,  # fresh cores of the test samples' queries (spurious-correlation metric)
    "synthetic.correlation": 13,  # the map P of correlated spurious parts
    # image memorization splits (numpy): base + 0 train pick, +1 test pick, +2 train borders, +3 test borders,
    # +4 train swap queries, +5 test swap queries, +6 the coloured task's pre-training borders, +7 its validation
    # borders (IMAGE_OFFSETS)
    "images.kernels": 100,
    "images.nets": 200,
    # random-feature / NTK weights (torch): key (seed, model code, N or 0, block)
    "features.rf": 1,
    "features.ntk": 2,
    "features.linear": 14,  # no random weights; named so that every kernel model has its stream
    # trained networks on memorization data (torch)
    "nets.init": 300,
    "nets.order": 301,  # minibatch order
    "nets.pretrain_order": 302,  # minibatch order of a remedy's pre-training and probing phases
    # feature contamination (torch)
    "contamination.map": 0,  # the embedding T
    "contamination.data": 1,  # train and test sets
    "contamination.sampling": 2,  # minibatches and online samples
    "contamination.init": 3,  # network initialisation
    "contamination.pretrain": 4,  # remedy pretrain / lp-ft: the wide-background pre-training set
    "contamination.pretrain.sampling": 5,  # its minibatches and online samples
    # representation distillation
    "distillation.map": 400,  # the embedding T of the synthetic task
    "distillation.prototypes": 401,  # class directions in the core subspace
    "distillation.data": 402,  # train / test samples and image backgrounds
    "distillation.teacher": 403,  # teacher initialisation and its (wide) training backgrounds
    "distillation.student": 404,  # student initialisation
    "distillation.baseline": 405,  # baseline initialisation
    "distillation.order": 406,  # minibatch order
    "distillation.probe": 407,  # torch probes
    "distillation.pretrain": 408,  # remedy pretrain / lp-ft: wide backgrounds of the synthetic pre-training set
    "distillation.renditions": 409,  # the random renditions of a renditions task's OOD sets (noise, frame colours)
    # background features in deep networks
    "background.init": 500,  # network initialisation
    "background.augment": 501,  # crops and flips (key: seed, stream, epoch)
    "background.order": 502,  # minibatch order
    "background.subset": 503,  # which training / test images
    "background.adversarial": 504,  # Gaussian noise of adversarial training
    "background.visualize": 505,  # initial images of the feature visualization
}

IMAGE_OFFSETS = {
    "train_pick": 0,
    "test_pick": 1,
    "train_border": 2,
    "test_border": 3,
    "train_query": 4,
    "test_query": 5,
    "pretrain_border": 6,  # the coloured task's pre-training borders (remedy pretrain / lp-ft)
    "val_border": 7,  # the coloured task's validation borders (n_val)
}


def stream_id(name: str) -> int:
    """The id of a named stream (a KeyError names a stream that is not in the table)."""
    return STREAMS[name]


def numpy_rng(seed: int, stream_id: int) -> np.random.Generator:
    """The numpy generator of stream ``stream_id`` of ``seed``."""
    return np.random.default_rng([seed, stream_id])


def torch_seed(*key: int) -> int:
    """A 63-bit torch seed derived from an integer key (e.g. ``(seed, stream)`` or a feature block's key)."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def torch_generator(seed: int, stream_id: int, device: str = "cpu") -> torch.Generator:
    """A torch generator for stream ``stream_id`` of ``seed``."""
    return torch.Generator(device=device).manual_seed(torch_seed(seed, stream_id))
