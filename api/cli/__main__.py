"""``python -m moorage.api.cli``."""

import sys

from moorage.api.cli.main import main

sys.exit(main())
