"""The manager: REST API, database, users and tokens, scheduler clusters, jobs."""
