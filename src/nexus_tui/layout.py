"""Runs first at any size: which panels show, collapse or zoom (a mixin of the app).

The screen gets size classes on every resize (``-short`` below 36 rows, ``-tiny`` below 28,
``-narrow`` below 110 columns) that the stylesheets use. On a short screen the Models and Task
panels start collapsed, so a run's reply keeps most of the rows; F2 and F3 override that, F4
shows the Health panel (on a narrow screen, in place of the runs), F7 zooms the run in view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import events
from textual.screen import Screen

if TYPE_CHECKING:
    from textual.app import App

    from nexus_tui.widgets.runs_area import RunsArea

    _AppBase = App[int]  # for the type checker only: the mixin uses the app's API
else:
    _AppBase = object

__all__ = ["LayoutControl"]

SHORT_ROWS = 36
TINY_ROWS = 28
NARROW_COLUMNS = 110


class LayoutControl(_AppBase):
    """Collapse, zoom and size classes for the app (mixed into :class:`~nexus_tui.app.NexusApp`)."""

    if TYPE_CHECKING:

        @property
        def runs_area(self) -> RunsArea:
            """The runs area (from :class:`~nexus_tui.run_control.RunControl`)."""
            ...

    def _init_layout(self) -> None:
        # None follows the screen size; True/False is the user's own choice (F2/F3).
        self._models_collapsed: bool | None = None
        self._task_collapsed: bool | None = None
        self.zoomed = False
        self.health_shown = False

    @property
    def base_screen(self) -> Screen:
        """The dashboard's own screen (a modal may be on top of it)."""
        return self.screen_stack[0]

    def on_resize(self, event: events.Resize) -> None:
        self.apply_layout(event.size.width, event.size.height)

    def apply_layout(self, width: int | None = None, height: int | None = None) -> None:
        """Set the size classes and the collapsed panels for a ``width``×``height`` terminal."""
        screen = self.base_screen
        size = screen.size
        width = size.width if width is None else width
        height = size.height if height is None else height
        short = height < SHORT_ROWS
        screen.set_class(short, "-short")
        narrow = width < NARROW_COLUMNS
        screen.set_class(height < TINY_ROWS, "-tiny")
        screen.set_class(narrow, "-narrow")
        screen.set_class(self.zoomed, "-zoom")
        # F4 shows Health where it is hidden by default (narrow) and hides it where it shows.
        screen.set_class(self.health_shown and narrow, "-health-toggled")
        screen.set_class(self.health_shown and not narrow, "-health-hidden")
        models = short if self._models_collapsed is None else self._models_collapsed
        task = short if self._task_collapsed is None else self._task_collapsed
        registry = screen.query_one("#registry")
        registry.set_class(models, "-collapsed")
        registry.border_title = "Models ▸ F2" if models else "Models"
        panel = screen.query_one("#task")
        panel.set_class(task, "-collapsed")
        panel.border_title = "Task ▸ F3 breakdown" if task else "Task"

    @property
    def models_collapsed(self) -> bool:
        return self.base_screen.query_one("#registry").has_class("-collapsed")

    @property
    def task_collapsed(self) -> bool:
        return self.base_screen.query_one("#task").has_class("-collapsed")

    def action_toggle_models(self) -> None:
        """Collapse or expand the Models panel."""
        self._models_collapsed = not self.models_collapsed
        self.apply_layout()

    def action_toggle_task(self) -> None:
        """Collapse the Task panel to its editor, or show the breakdown again."""
        self._task_collapsed = not self.task_collapsed
        self.apply_layout()

    def action_toggle_health(self) -> None:
        """Show or hide the Health panel (it replaces the runs on a narrow screen)."""
        self.health_shown = not self.health_shown
        self.apply_layout()

    def action_zoom(self) -> None:
        """Show the run in view full screen, or go back."""
        self.zoomed = not self.zoomed
        self.apply_layout()
        if self.zoomed:
            view = self.runs_area.active_view
            (view.log_widget if view is not None else self.runs_area).focus()

    def action_filter_models(self) -> None:
        """Focus the registry filter from anywhere (the Models panel opens if collapsed, zoom ends)."""
        if self.screen is not self.base_screen:
            return
        if self.models_collapsed:
            self._models_collapsed = False
        self.zoomed = False
        self.apply_layout()
        self.query_one("#registry-filter").focus()
