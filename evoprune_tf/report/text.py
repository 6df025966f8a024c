"""Numbers in report summaries, printed no more precisely than they were measured.

One seed has no spread: its value is printed without ``± std`` (a ``± 0.0000`` reads as
a measured zero spread). Counts say ``1 seed`` / ``3 seeds``, and a count that is a mean
over seeds (an ensemble's members) prints as an integer when it is one. The report
printers of `evoprune_tf.report`, `evoprune_tf.app` and `evoprune_tf.studies` share these
so that every summary reads the same way. Standard library only: the CLI imports it.
"""

from __future__ import annotations

import math

__all__ = ["plural", "mean_std", "count"]


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """``n`` followed by ``word``, in the plural unless ``n`` is one.

    Args:
        n: the count.
        word: the singular noun (``"seed"``).
        many: the plural when it is not ``word + "s"``.

    Returns:
        E.g. ``"1 seed"``, ``"3 seeds"``, ``"2.5 members"``.
    """
    return f"{count(n)} {word if n == 1 else (many or word + 's')}"


def mean_std(mean: float | None, std: float | None, n: int, digits: int = 4, missing: str = "-") -> str:
    """A mean with its spread when there is one: ``"0.8123 ± 0.0100"``, or ``"0.8123"``.

    Args:
        mean: the mean (None: not measured).
        std: its standard deviation over the ``n`` values (None or NaN: unknown).
        n: how many values the mean is over; with one value no spread is printed.
        digits: decimals of both numbers.
        missing: what to print when ``mean`` is None.

    Returns:
        The text.
    """
    if mean is None:
        return missing
    text = f"{mean:.{digits}f}"
    if n != 1 and std is not None and not math.isnan(std):
        text += f" ± {std:.{digits}f}"
    return text


def count(value: int | float) -> str:
    """A count, or a mean of counts: an integer when it is integral, else one decimal.

    Args:
        value: e.g. an ensemble's ``n_members`` averaged over the retrain seeds.

    Returns:
        ``"16"`` for 16 or 16.0, ``"15.5"`` for 15.5.
    """
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:.1f}"
