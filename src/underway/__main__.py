"""``python -m underway``: the same as the ``underway`` command."""

from underway.cli import main

if __name__ == "__main__":
    main(prog_name="underway")
