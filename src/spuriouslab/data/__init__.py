"""Data: synthetic generators and spurious queries."""

from spuriouslab.data.synthetic import SyntheticSplit, synthetic_memorization

__all__ = ["SyntheticSplit", "synthetic_memorization"]
