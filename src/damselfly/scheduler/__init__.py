"""The scheduler: hosts, tasks and the peers holding them, in memory; parent selection."""
