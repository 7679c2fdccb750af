"""``python -m fakes.sendgrid_standin`` (with ``tests`` on ``PYTHONPATH``)."""

import sys

from .cli import main

sys.exit(main())
