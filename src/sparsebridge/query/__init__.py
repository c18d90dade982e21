"""Engine-neutral queries: the hybrid query and client-side fusion.

``fusion`` holds the one definition of each fusion method; each engine's request bodies live in
its backend package (``sparsebridge.backends.<engine>.bodies``).
"""

from sparsebridge.query.fusion import Fusion, FusionMethod, fuse
from sparsebridge.query.hybrid import HybridQuery, LegKind

__all__ = ["Fusion", "FusionMethod", "HybridQuery", "LegKind", "fuse"]
