"""How numbers and tables are written in the report."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from tf_selectivity.measures import stats


def format_selectivity(value: float) -> str:
    """Selectivity-like values (0..1): 0.216, 0.070, 0.0079, 0.00014.

    Three decimals keep a table column aligned; values that would round to
    0.00x keep two significant digits instead, because the paper's
    strongest suppression reaches selectivity of order 0.003.
    """
    if not np.isfinite(value):
        return "n/a"
    if abs(value) >= 0.01 or value == 0:
        return f"{value:.3f}"
    return f"{value:.2g}"


def format_number(value, digits: int = 3) -> str:
    """0.12345 -> "0.123"; "n/a" for None, NaN or infinity."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def format_percent(fraction: float, digits: int = 2) -> str:
    """0.9123 -> "91.23" (a fraction shown in percent, without the sign)."""
    return "n/a" if not np.isfinite(fraction) else f"{100 * fraction:.{digits}f}"


def format_with_ci(mean: float, low: float, high: float, formatter, n: int) -> str:
    """"mean [low, high]", or just the mean when no interval exists (n < 2)."""
    if not np.isfinite(mean):
        return "n/a"
    if n < 2 or not (np.isfinite(low) and np.isfinite(high)):
        return formatter(mean)
    return f"{formatter(mean)} [{formatter(low)}, {formatter(high)}]"


def format_p_cell(p: float) -> str:
    """A p-value in a table cell: "0.03", "< 1e-6", "n/a"."""
    text = stats.format_p_value(p)
    return text[len("p = "):] if text.startswith("p = ") else text[len("p "):]


def _escape_cell(text: str) -> str:
    """Keeps a table cell on one line and its pipes literal."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub-flavoured Markdown table.

    (`pandas.DataFrame.to_markdown` needs the optional `tabulate` package,
    which is not a dependency.)

    Args:
        headers: Column titles.
        rows: Cells per row, already formatted (converted with `str`).

    Returns:
        The table text, without a trailing newline.
    """
    lines = [
        "| " + " | ".join(_escape_cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_escape_cell(cell) for cell in row) + " |")
    return "\n".join(lines)
