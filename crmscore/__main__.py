"""`python -m crmscore` runs the CLI."""

from crmscore.cli import app

app()
