"""``python -m weir`` is the ``weir`` command."""

from weir.cli import main

main()
