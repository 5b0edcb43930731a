"""Grid carbon intensity: static per-country factors (`static`), trace files (`trace`), live sources."""
