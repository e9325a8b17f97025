"""hardware_sims."""
