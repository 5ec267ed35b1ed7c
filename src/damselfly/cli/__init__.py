"""The `damselfly` command line."""
