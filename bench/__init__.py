"""nexus benchmarks: each module measures goals and reports them through :mod:`bench.common`."""
