"""The one exception type users see: the CLI prints its message on one line and exits 2."""


class DimattnError(Exception):
    """Bad input from the user (unknown game, malformed option, corrupt file, ...).

    The message must say what was wrong and what to do about it.
    """
