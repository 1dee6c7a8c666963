"""User-facing errors: the CLI prints their one-line message and exits with code 2."""


class UserError(Exception):
    """Bad input (a path, a file, a setting), named in a one-line message."""
