"""``python -m audiotok ...`` (and ``torchrun ... -m audiotok tokenize ...``): the ``audiotok`` command."""

import sys

from audiotok.cli import main

sys.exit(main())
