"""enrolment_station."""
