"""Amounts in the units a person reads at a glance, the same in every command and page.

Scripts get the exact figures (`--json`); these are for people.
"""

from __future__ import annotations


def human_energy(kwh: float | None) -> str:
    """Energy in the unit that reads at a glance: 5.26 mWh, 12.4 Wh, 3.1 kWh."""
    if kwh is None:
        return "-"
    wh = kwh * 1000
    if wh == 0:
        return "0 Wh"
    if wh < 1e-5:
        return "< 0.01 mWh"
    if wh < 1:
        return f"{wh * 1000:.3g} mWh"
    if wh < 1000:
        return f"{wh:.3g} Wh"
    return f"{kwh:,.3g} kWh" if kwh < 1000 else f"{kwh:,.0f} kWh"


def human_cost(usd: float | None) -> str:
    """Dollars with the digits that matter: $0.0037, $0.42, $12.40, $1,234; None is unpriced."""
    if usd is None:
        return "unpriced"
    if usd == 0:
        return "$0"
    if usd < 0.0001:
        return "< $0.0001"
    if usd < 1:
        return f"${usd:.2g}"
    return f"${usd:,.2f}" if usd < 1000 else f"${usd:,.0f}"


def human_seconds(seconds: float) -> str:
    """Device time: 12.3 s, 4.2 min, 3.1 h."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} h"


def human_bytes(size: float | None) -> str:
    """Sizes in binary units: 512 B, 3.4 MB, 1.2 GB."""
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
