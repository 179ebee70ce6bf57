"""``python -m spuriouslab``: the command line (the same as the ``spuriouslab`` command)."""

from spuriouslab.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
