"""``python -m tools.aio SUBCOMMAND``: what ``tools/allinone`` runs."""

import sys

from tools.aio import cli

sys.exit(cli.main())
