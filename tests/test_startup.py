"""Start-up: the command line and the package import only what they use."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sklearn", "scipy", "matplotlib")


def _modules_after(code: str) -> dict:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "\
            f"{HEAVY!r} or m.startswith('logreg_mnist'))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def _heavy(modules):
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


def test_the_cli_and_its_help_import_no_sklearn_scipy_or_matplotlib():
    assert _heavy(_modules_after("import logreg_mnist.cli")) == []
    loaded = _modules_after("from logreg_mnist.cli import main\ntry:\n    main(['train', '--help'])\n"
                            "except SystemExit:\n    pass")
    assert _heavy(loaded) == [] and "logreg_mnist.estimator" not in loaded


def test_the_package_loads_its_names_on_first_use():
    loaded = _modules_after("import logreg_mnist\nlogreg_mnist.train, logreg_mnist.load_mnist, "
                            "logreg_mnist.load_model, logreg_mnist.__version__")
    assert _heavy(loaded) == [] and "logreg_mnist.train" in loaded and "logreg_mnist.engines.fused" not in loaded
    loaded = _modules_after("from logreg_mnist import SoftmaxRegressionClassifier")
    assert "sklearn" in {m.split(".")[0] for m in loaded}
    assert _heavy(_modules_after("import logreg_mnist.persistence")) == []


def test_lazy_names_are_the_real_ones():
    import logreg_mnist
    from logreg_mnist.train import train

    assert logreg_mnist.train is train and "train" in dir(logreg_mnist)
    assert set(logreg_mnist.__all__) >= {"load_mnist", "train", "SoftmaxRegressionClassifier", "__version__"}
    try:
        logreg_mnist.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("expected AttributeError")
