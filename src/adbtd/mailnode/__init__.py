"""mailnode."""
