"""Command-line interface (see :mod:`ecgfm.cli.main`)."""
