"""Back-to-source clients: fetch a task's bytes from its origin.

`damselfly.source.http` (urllib3) is imported only where an origin is contacted, so a
cache hit does not pay for it.
"""
