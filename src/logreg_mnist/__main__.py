"""``python -m logreg_mnist``: the same as the ``logreg-mnist`` command."""

import sys

from .cli import main

sys.exit(main())
