"""Plain-text tables for the calibration reports."""

from __future__ import annotations


def text_table(rows: list[tuple[str, ...]]) -> str:
    """Rows of cells as left-aligned columns, two spaces apart."""
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )


__all__ = ["text_table"]
