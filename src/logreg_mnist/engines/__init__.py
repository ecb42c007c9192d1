"""Engines: where the minibatch updates and the error counts are computed."""
