"""Back-to-source clients: fetch a task's bytes from its origin.

`damselfly.source.http` (aiohttp) is imported only where an origin is contacted, so a
cache hit does not pay for it.
"""
