"""Data: where to add a data set.

* :mod:`.synthetic` - Gaussian ``z = [x, y]`` memorization data;
* :mod:`.contamination` - core / background latent tasks for feature contamination;
* :mod:`.datasets` - the data-set registry :data:`~spuriouslab.data.datasets.DATASETS`: a new image data set is
  one :class:`~spuriouslab.data.datasets.DatasetSpec` entry (its reader, files, shape, defaults, sources, checksum);
* :mod:`.formats` - readers of the real formats (IDX, CIFAR pickle, sklearn digits, image folders);
* :mod:`.images` - discovery, loading, verification and fetching of every registered data set;
* :mod:`.borders` - spurious borders, queries, pixel scaling;
* :mod:`.memorization` - :func:`build_split`, the one builder of :class:`MemorizationSplit` for every consumer.
"""

from spuriouslab.data.memorization import SplitSpec, build_split
from spuriouslab.data.split import MemorizationSplit
from spuriouslab.data.synthetic import synthetic_memorization

__all__ = ["MemorizationSplit", "SplitSpec", "build_split", "synthetic_memorization"]
