"""The nexus dashboard app."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Footer, Header

from nexus_core.opencode_config import ConfigError, load_config
from nexus_core.registry import build_registry, overlay_paths

STYLES = Path(__file__).resolve().parents[2] / "styles"


class NexusApp(App[int]):
    """Registry table (the dashboard issue grows this into the full dashboard)."""

    CSS_PATH = str(STYLES / "app.tcss")
    TITLE = "nexus"

    def __init__(self, project_dir: str | None = None, demo: bool = False) -> None:
        super().__init__()
        self.project_dir = project_dir
        self.demo = demo
        self.sub_title = "DEMO" if demo else ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="registry", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#registry", DataTable)
        table.add_columns("id", "CLI model name", "provider", "reasoning", "code", "speed", "cost", "context", "source")
        try:
            config = load_config(self.project_dir)
        except ConfigError as exc:
            self.notify(exc.sentence(), severity="error", timeout=10)
            config = None
        registry = build_registry(config, overlay_paths(self.project_dir))
        for m in registry.models:
            q = m.quality
            table.add_row(
                m.id, m.cli_model_name or "—", m.provider, f"{q.reasoning:g}", f"{q.code:g}",
                f"{q.speed:g}", f"{q.cost:g}", f"{m.context_limit:,}" if m.context_limit else "—", m.source,
                key=m.id,
            )
