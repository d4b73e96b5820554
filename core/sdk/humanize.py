"""Docker 0.6's human-readable figures: durations (``utils.HumanDuration``) for ``Status``,
sizes (``utils.HumanSize``) and the preformatted ``progress`` of pulls, pushes and imports."""

from __future__ import annotations


def human_duration(seconds: float) -> str:
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 3:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours / 24 / 365:f} years"


_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float) -> str:
    """Docker 0.6's ``HumanSize``: decimal units, 4 significant digits (``10.24 MB``)."""
    i = 0
    while size >= 1000.0 and i < len(_SIZE_UNITS) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g} {_SIZE_UNITS[i]}"


def progress_text(current: int, total: int | None) -> str:
    """Docker 0.6's progressReader template ``"%8v/%v (%v)"``: human sizes and the percentage
    rounded (``%.0f%%``), or the raw byte count, ``?`` and ``n/a`` without a total."""
    if total and total > 0:
        return f"{human_size(current):>8}/{human_size(total)} ({current / total * 100:.0f}%)"
    return f"{current:>8}/? (n/a)"
