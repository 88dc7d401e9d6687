"""The one error type for things a user can fix.

Every module raises a subclass of `UserError` when the cause is the user's input or
environment (a bad key in params.yaml, a source that is down, a model URI that names
nothing) and the message names the input and the fix. The CLI catches `UserError` once and
prints the message with exit code 2; anything else is a bug in aigc and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message says which input and how."""
