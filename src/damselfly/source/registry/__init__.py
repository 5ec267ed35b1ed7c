"""Container registries (distribution v2 API): manifest URLs, manifests, blob URLs.

`reference` and `manifests` are pure; `client` talks to a registry through
`damselfly.source.http`, whose bearer-token flow also serves back-to-source blob reads.
"""
