"""Hostile-input corpus for the error contract of the ``bioplast`` command line."""
