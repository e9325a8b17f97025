"""fingers."""
