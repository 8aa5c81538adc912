"""Routing: the model registry, the scoring with its breakdown, expert roles and the fallback chain runner."""
