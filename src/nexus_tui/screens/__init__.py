"""The dashboard's modal screens."""

from nexus_tui.screens.details import DetailsScreen
from nexus_tui.screens.dialogs import HELP_TEXT, ConfirmQuitScreen, HelpScreen
from nexus_tui.screens.permission import PermissionScreen

__all__ = ["HELP_TEXT", "ConfirmQuitScreen", "DetailsScreen", "HelpScreen", "PermissionScreen"]
