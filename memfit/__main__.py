"""`python -m memfit ...` and `accelerate launch -m memfit train ...` run the console script."""

import sys

from .cli import main

sys.exit(main())
