"""``python -m logreg_mnist``: the same as the ``logreg-mnist`` command."""

from .cli import command

command()
