"""``python -m logreg_mnist.cli``: the same as the ``logreg-mnist`` command."""

from . import command

command()
