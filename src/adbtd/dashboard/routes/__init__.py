"""Dashboard routes, one module per area."""
