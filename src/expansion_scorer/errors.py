"""Errors a user can cause and fix; the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input or configuration: the message says what, where, and what to do."""


class ContractError(UserError):
    """An input table breaks the data contract."""
