"""The loopback reference gateway: an OpenAI-compatible server with scripted replies and fault injection.

For tests, the dashboard's demo mode and users checking their set-up (``nexus-agents gateway``).
"""

from nexus_core.gateway.faults import FAULT_KINDS, Fault, FaultKind, RequestKind, parse_fault_spec
from nexus_core.gateway.opencode import DEFAULT_MODEL_LIMITS, opencode_config, write_opencode_config
from nexus_core.gateway.replies import Script, ToolCall, Turn
from nexus_core.gateway.server import DEFAULT_MODELS, DEFAULT_TITLE, RecordedRequest, ReferenceGateway

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_MODEL_LIMITS",
    "DEFAULT_TITLE",
    "FAULT_KINDS",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "ReferenceGateway",
    "RequestKind",
    "Script",
    "ToolCall",
    "Turn",
    "opencode_config",
    "parse_fault_spec",
    "write_opencode_config",
]
