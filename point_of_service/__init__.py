"""point_of_service."""
