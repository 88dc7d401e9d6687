"""The `aigc` command line (see cli.main)."""
