"""``python -m modelops.sandbox.kubelet``."""

import sys

from . import main

sys.exit(main())
