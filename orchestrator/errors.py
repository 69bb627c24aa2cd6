"""Exit codes, and the errors that carry every problem found, each naming where it is."""

from __future__ import annotations

from hub.errors import InputError

EXIT_RENDER_FAILED = 1
EXIT_INVALID_INPUT = 2
EXIT_ROLLOUT_FAILED = 1  # a region failed its gates (and was rolled back, or could not be)
EXIT_REFUSED = 3  # not started: the lock is held, a stage may not be promoted yet, or the question was declined
EXIT_PREFLIGHT_BLOCKED = 1  # preflight: the app has blocking findings for the mode (or fits no mode that leaves Action Cable)

__all__ = ["InputError", "RenderError", "EXIT_INVALID_INPUT", "EXIT_PREFLIGHT_BLOCKED", "EXIT_REFUSED", "EXIT_RENDER_FAILED",
           "EXIT_ROLLOUT_FAILED"]


class RenderError(Exception):
    """A rendered file failed its own check (a template bug, never user input)."""

