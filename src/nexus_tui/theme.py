"""The dashboard's colour theme (registered as ``nexus``; the palette's theme switcher lists the rest)."""

from __future__ import annotations

from textual.theme import Theme

__all__ = ["NEXUS_THEME"]

NEXUS_THEME = Theme(
    name="nexus",
    primary="#5fafff",
    secondary="#af87ff",
    accent="#ffaf5f",
    warning="#ffd75f",
    error="#ff5f5f",
    success="#5fd787",
    foreground="#d0d7de",
    background="#0d1117",
    surface="#161b22",
    panel="#1f2630",
    dark=True,
    variables={
        "footer-key-foreground": "#5fafff",
        "block-cursor-text-style": "bold",
        "input-selection-background": "#5fafff 35%",
    },
)
