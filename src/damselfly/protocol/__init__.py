"""Messages between services, shared by both ends (no service imports another's code)."""
