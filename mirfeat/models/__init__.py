"""Models that ship with mirfeat (see LICENSE-musicnn for the weights' licence)."""
