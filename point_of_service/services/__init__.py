"""POS services: sign-in, verification, hospital, paypoint, recovery, sync. The CLI is a thin layer above."""
