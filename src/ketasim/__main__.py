"""``python -m ketasim``: the command-line interface, as the ``ketasim`` script."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
