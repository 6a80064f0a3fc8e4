"""`python -m hwnas.search.cli`: the same as the `hwnas` command."""

import sys

from hwnas.search.cli.entry import main

sys.exit(main())
