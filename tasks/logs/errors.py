"""The logs pipeline's input errors: one line saying what is wrong, in which dataset or file, and
what to do (the CLI prints it and exits 2)."""

from __future__ import annotations

from tasks.common.errors import InputError


class LogsError(InputError):
    """A logs dataset, file or setting the pipeline cannot use as it is."""
