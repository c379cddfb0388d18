"""``python -m jinav3.integrations.cli ...``: the same as ``jinav3 ...``."""

import sys

from jinav3.integrations.cli import main

sys.exit(main())
