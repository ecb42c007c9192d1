"""``logreg-mnist plot``, ``digits`` and ``serve``: pictures of a run, a model, a sweep or the data; the page."""

from __future__ import annotations

import argparse

from ..errors import EXIT_OK, ConfigError
from .loading import load_data, load_run_data, model_target


def cmd_plot(args: argparse.Namespace) -> int:
    """draw weights, learning curves, confusion matrix and mistakes as PNG files

    Draw the pictures of a run directory (or of one model file) as PNG files and print their paths.
    """
    from .._paths import check_output_dir, make_dir
    from ..plots_from_files import plot_run
    from ..sweep import is_sweep_dir

    if args.out is not None:
        check_output_dir(args.out, "--out")
    # a sweep's pictures come from its trials' records; a run's test-set pictures need its data
    data = None if is_sweep_dir(args.target) else load_run_data(args, args.target)
    if args.out is not None:
        make_dir(args.out, "--out")
    for path in plot_run(args.target, data, args.out):
        print(path)
    return EXIT_OK


def cmd_digits(args: argparse.Namespace) -> int:
    """draw a grid of sample digits from a split

    Write a PNG grid of digits: the first N of a split, or N of one class.
    """
    import numpy as np

    from .._paths import check_output_file
    from ..plots import class_label, digits_figure, save_figure

    if args.n < 1:
        raise ConfigError(f"-n: expected a number of images >= 1, found {args.n}")
    check_output_file(args.out, "--out", suffix=".png")
    data = load_data(args)
    split = data.split(args.split)
    if args.digit is None:
        indices = np.arange(min(args.n, len(split)))
        title = f"The first {len(indices)} {args.split} images"
    else:
        if not 0 <= args.digit < data.n_classes:
            raise ConfigError(f"--digit: expected a class in 0-{data.n_classes - 1}, found {args.digit}")
        indices = np.flatnonzero(split.labels == args.digit)[: args.n]
        title = f"The first {len(indices)} {args.split} images labelled {class_label(data.class_names[args.digit])}"
    fig = digits_figure(
        split.images[indices], split.labels[indices], indices=indices, title=title, class_names=data.class_names
    )
    print(save_figure(fig, args.out, what="--out"))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """a local web page: draw a digit and watch the model decide

    Serve a page where you draw a digit and see the class probabilities, the 28x28 input the model
    sees and the evidence for its answer, with the run's weights and learning curves. Ctrl-C stops
    it. For a classroom, --host 0.0.0.0 lets every computer that can reach this one use the page
    (it has no authentication: only on a network you trust), and --workers N sets how many server
    processes share the drawings (default with --host 0.0.0.0: one per core, at most 8).
    """
    from ..serve import serve

    serve(model_target(args.target, "serve"), args.host, args.port, workers=args.workers)
    return EXIT_OK
