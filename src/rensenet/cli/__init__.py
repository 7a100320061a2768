"""Command line interface (``rensenet`` / ``python -m rensenet``)."""
