"""One-line error messages: errors are reported as a single line naming the bad value."""

from __future__ import annotations

__all__ = ["one_line"]


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """An error's message on one line, whitespace collapsed, cut to ``limit`` characters.

    Args:
        error: an exception (its class name stands in for an empty message) or a text.
        limit: the longest result; longer messages end with ``...``.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
