"""The peer: download engine, output placement (and later the daemon and upload server)."""
