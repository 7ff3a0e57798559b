"""``python -m atomtomo``: the command line (see :mod:`atomtomo.cli`)."""

from .cli import main

if __name__ == "__main__":
    main()
