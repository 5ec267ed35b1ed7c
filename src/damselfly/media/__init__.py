"""Media processing: tasks of subtasks (transcode, snapshots, analysis…) run by PyAV.

`templates` and `spec` are pure (what may be asked); `models` the rows; `service` the
operations users call (create, list, restart, abort); `work/` what a worker runs.
"""
