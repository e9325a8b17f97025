"""Card applications shipped with the simulator (the generic one for tests; product ones live elsewhere)."""
