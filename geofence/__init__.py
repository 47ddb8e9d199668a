"""Accuracy-aware geofence decisions, batched through Numba kernels."""

from geofence.fences import Decision, FenceSet, classify, warm_up
from geofence.kernels import ACCURACY_68_TO_95, INSIDE, INVALID, OUTSIDE, UNCERTAIN

__all__ = ["ACCURACY_68_TO_95", "INSIDE", "INVALID", "OUTSIDE", "UNCERTAIN",
           "Decision", "FenceSet", "classify", "warm_up"]
