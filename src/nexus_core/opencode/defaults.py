"""An attempt's default limits, in a module of their own: the CLI's parser shows them without
importing the adapter."""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_GATEWAY_RETRIES", "DEFAULT_STALL_TIMEOUT_S", "DEFAULT_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 900.0
DEFAULT_STALL_TIMEOUT_S = 180.0
DEFAULT_MAX_GATEWAY_RETRIES = 3
