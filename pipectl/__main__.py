"""``python -m pipectl``: the same as the ``pipectl`` command."""

from .cli import main

main()
