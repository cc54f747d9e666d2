"""Analyses of activity: bioplast results and recordings go through the same functions."""
