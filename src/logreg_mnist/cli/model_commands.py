"""``logreg-mnist predict`` and ``logreg-mnist evaluate``: a saved model on inputs or on its run's data."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import EXIT_OK, DataError
from .loading import load_run_data, model_target


def _load_model(path):
    from ..persistence import load_model

    return load_model(path)


def cmd_predict(args: argparse.Namespace) -> int:
    """predict digits with a saved model

    Without inputs: the predicted labels of the first 10 test digits, as the chapter's predict().
    With inputs: a label and its probability per image.
    """
    import numpy as np

    from ..predict import check_picture_path, predictions, read_inputs
    from ..run import class_names_for

    if args.show:
        check_picture_path(args.show)
    args.model = model_target(args.model, "predict")
    model, meta = _load_model(args.model)
    if not args.inputs:
        data = load_run_data(args, args.model)
        names = data.class_names
        predicted = model.predict(data.test.images[:10])
        if args.json:
            print(
                json.dumps(
                    {
                        "predicted": predicted.tolist(),
                        "true": data.test.labels[:10].tolist(),
                        "predicted_names": [names[i] for i in predicted],
                    }
                )
            )
        else:
            print("Predicted values for the first 10 examples in test set:")
            print(np.array2string(predicted))
            if names != [str(i) for i in range(len(names))]:
                print(", ".join(names[i] for i in predicted))
        return EXIT_OK
    names = class_names_for(meta, model.n_out)
    batch = read_inputs(args.inputs, model.n_in, raw=args.raw, thumbnails=bool(args.show))
    for line in batch.skipped:
        print(f"logreg-mnist predict: {line}", file=sys.stderr)
    if not batch.inputs:  # nothing to predict: each error in its line, the last one as the command's error
        for e in batch.errors[:-1]:
            print(f"logreg-mnist predict: error: {e}", file=sys.stderr)
        raise batch.errors[-1]
    for e in batch.errors:
        print(f"logreg-mnist predict: error: {e}", file=sys.stderr)
    inputs = batch.inputs
    results = predictions(model, inputs)
    if args.show:
        from ..plots import predictions_figure, save_figure

        save_figure(predictions_figure(inputs, results), args.show)
    if args.json:
        print(json.dumps([{**r.to_dict(), "class_name": names[r.label]} for r in results], indent=2))
    else:
        width = max(len(r.input) for r in results)
        numeric = names == [str(i) for i in range(len(names))]
        for r in results:
            name, runner_up = ("", "") if numeric else (f" {names[r.label]}", f" {names[r.runner_up]}")
            flags = "".join(
                [
                    "  blank: no digit found" if r.blank else "",
                    "  low confidence" if r.low_confidence and not r.blank else "",
                ]
            )
            print(
                f"{r.input:<{width}}  {r.label}{name}  (probability {r.probability:.4f}; runner-up "
                f"{r.runner_up}{runner_up}, {r.runner_up_probability:.4f}){flags}"
            )
    if args.show:
        print(f"picture: {args.show}", file=sys.stderr)
    if batch.errors:
        sys.stdout.flush()  # the predictions before the line that ends the command
        n_bad = len(batch.errors)
        raise DataError(
            f"{n_bad} of {batch.tried} inputs could not be read (above); the other {batch.tried - n_bad} "
            f"{'was' if batch.tried - n_bad == 1 else 'were'} predicted"
        )
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    """validation and test error of a saved model, per class too

    Print the validation and test error over every example and the test error per class.
    """
    from ..predict import evaluate

    args.model = model_target(args.model, "evaluate")
    model, meta = _load_model(args.model)
    data = load_run_data(args, args.model)
    report = evaluate(model, data)
    names = data.class_names + [str(i) for i in range(len(data.class_names), model.n_out)]
    for c in report["test"]["per_class"]:
        c["name"] = names[c["label"]]
    report["dataset"] = data.identity
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"{data.title} from {data.source}, every example counted:")
    for name in ("valid", "test"):
        r = report[name]
        print(f"{name:<5} error {r['error'] * 100:8.4f} % of {r['n']:,}  ({r['wrong']:,} wrong)")
    if meta.get("n_test") and meta["n_test"] != report["test"]["n"] and meta.get("test_error") is not None:
        print(
            f"(training measured this model on {meta['n_test']:,} test examples: "
            f"{meta['test_error'] * 100:.4f} % of {meta['n_test']:,})"
        )
    print("\ntest error per class:")
    width = max(9, *(len(n) for n in names))
    print(f"  {'class':<{width}}       n   wrong    error")
    for c in report["test"]["per_class"]:
        err = "-" if c["error"] is None else f"{c['error'] * 100:7.3f} %"
        print(f"  {c['name']:<{width}}  {c['n']:>6,}  {c['wrong']:>6,}  {err:>9}")
    return EXIT_OK
