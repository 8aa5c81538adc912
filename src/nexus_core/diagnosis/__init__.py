"""Diagnosis by meaning: how real gateways say no, recognised and named, with one fix per cause.

    from nexus_core.diagnosis import classify
    d = classify(400, headers, body, context=DiagnosisContext(auth_sent=True))
    d.cause      # Cause.AUTH_REJECTED: LiteLLM answers a bad key with 400
    d.summary    # "LiteLLM proxy: the gateway rejects the key (400): …"

The doctor's probes, the ``opencode run`` adapter, the MCP server and the dashboard all read
their verdicts from here. The table itself is :mod:`nexus_core.diagnosis.shapes`.
"""

from nexus_core.diagnosis.classify import classify, error_words, recognise
from nexus_core.diagnosis.model import Cause, Diagnosis, DiagnosisContext, Scope

__all__ = ["Cause", "Diagnosis", "DiagnosisContext", "Scope", "classify", "error_words", "recognise"]
