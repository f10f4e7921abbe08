"""``python -m underway.cli``: the ``underway`` command."""

from underway.cli._main import main

if __name__ == "__main__":
    main(prog_name="underway")
