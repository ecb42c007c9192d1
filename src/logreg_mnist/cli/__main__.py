"""``python -m logreg_mnist.cli``: the same as the ``logreg-mnist`` command."""

import sys

from . import main

sys.exit(main())
