"""`python -m tornado_run.runner`: the same as the `tornado-run` command."""

import sys

from .cli import main

sys.exit(main())
