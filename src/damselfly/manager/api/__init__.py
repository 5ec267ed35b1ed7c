"""The manager's REST API under /api/v1."""
