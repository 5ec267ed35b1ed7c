"""The durable job engine: each job is a database row users see; a queue library
(Huey) delivers it to a worker thread. Shared by the task jobs and media tasks."""
