"""Pictures as pure functions: from arrays, models and history rows to matplotlib figures.

Nothing here reads a run, a model file or a sweep: :mod:`logreg_mnist.plots_from_files`
loads those and calls these builders. Every ``*_figure`` function returns a
:class:`matplotlib.figure.Figure` built without pyplot, so it renders with no display
and leaves a notebook's backend alone (a notebook shows the returned figure as it
is). :func:`save_figure` writes PNG atomically. :func:`tile_raster_images` returns a
uint8 array, like the tutorials' ``utils.tile_raster_images``.

Classes are labelled by their names (``Dataset.class_names``, recorded in runs and
model files): "digit 7" for MNIST, "Sneaker" for Fashion-MNIST. Every error shown
says over how many examples it was measured.
"""

from .base import DIVERGING_CMAP, class_label, of_total, padded_names, save_figure, tile_raster_images
from .inputs import MAX_SHOWN, digits_figure, predictions_figure
from .runs import (
    confident_mistakes_figure,
    confusion_counts,
    confusion_matrix_figure,
    learning_curves_figure,
    snapshots_figure,
    weights_figure,
)
from .sweeps import sweep_curves_figure, sweep_figure

__all__ = [
    "DIVERGING_CMAP",
    "MAX_SHOWN",
    "class_label",
    "confident_mistakes_figure",
    "confusion_counts",
    "confusion_matrix_figure",
    "digits_figure",
    "learning_curves_figure",
    "of_total",
    "padded_names",
    "predictions_figure",
    "save_figure",
    "snapshots_figure",
    "sweep_curves_figure",
    "sweep_figure",
    "tile_raster_images",
    "weights_figure",
]
