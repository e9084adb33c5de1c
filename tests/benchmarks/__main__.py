"""``python -m tests.benchmarks [--quick] [--only NAME] [--json PATH] [--profile]``."""

import sys

from .suite import main

sys.exit(main())
