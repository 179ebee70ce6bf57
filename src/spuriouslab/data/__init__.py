"""Data: where to add a data set.

* :mod:`.synthetic` - Gaussian ``z = [x, y]`` memorization data;
* :mod:`.contamination` - core / background latent tasks for feature contamination;
* :mod:`.images` - loaders for the real formats (IDX, CIFAR pickle, sklearn digits, image folders), discovery,
  verification and fetching: a new image data set is a loader plus an entry in ``IMAGE_DATASETS``;
* :mod:`.borders` - spurious borders, queries, pixel scaling;
* :mod:`.memorization` - :func:`build_split`, the one builder of :class:`MemorizationSplit` for every consumer.
"""

from spuriouslab.data.memorization import SplitSpec, build_split
from spuriouslab.data.split import MemorizationSplit
from spuriouslab.data.synthetic import synthetic_memorization

__all__ = ["MemorizationSplit", "SplitSpec", "build_split", "synthetic_memorization"]
