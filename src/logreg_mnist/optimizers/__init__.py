"""Optimisers besides the chapter's minibatch SGD (which lives in :mod:`logreg_mnist.train`)."""

from .full_batch import METHODS, minimize, pack, run_full_batch, unpack

__all__ = ["METHODS", "minimize", "pack", "run_full_batch", "unpack"]
