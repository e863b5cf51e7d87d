"""One exception type for bad input, so every stage reports it the same way: one line, no traceback."""

from __future__ import annotations


class PipelineInputError(Exception):
    """Bad input a user can fix: a missing file, a missing column, an unparseable value.

    The message must name the file (or setting), the column or value, and what was expected,
    because the stage prints it as a single line and exits non-zero.
    """


class StaleInputError(PipelineInputError):
    """An upstream output is missing or older than its inputs; the message names the stage to run."""
