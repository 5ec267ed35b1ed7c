"""The web console, served by the manager at `/`: task cache pages (search, delete,
executions, preheat) and media task pages (tasks, templates, workflows).

Server-rendered Jinja2 pages with htmx (vendored in `static/`, no CDN, no Node) for
partial updates, and server-sent events that tell a page when to re-read a part.
"""
