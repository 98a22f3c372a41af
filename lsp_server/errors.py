"""The one exception type that carries a user-facing, one-line message."""


class CodetailorError(Exception):
    """A problem the user can fix: the message says what is wrong and how to fix it.

    The command line prints it as one line and exits with status 2; the server
    reports it once and keeps running.
    """
