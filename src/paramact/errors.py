"""Errors that mean 'the user asked for something that cannot be done'.

The CLI turns a UserError into one line on stderr and exit code 2; library callers
can catch it like any exception.
"""


class UserError(ValueError):
    """Bad input: unknown model, unreadable file, invalid option value."""
