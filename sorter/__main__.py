"""`python -m sorter` is the `sorter` command."""

import sys

from sorter.controller.cli.main import main

sys.exit(main())
