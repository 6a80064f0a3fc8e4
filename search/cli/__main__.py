"""`python -m search.cli`: the same as the `hwnas` command."""

import sys

from search.cli.main import main

sys.exit(main())
