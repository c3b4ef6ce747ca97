"""Plumbing shared by every floor: files, settings, private-API compatibility, command-line helpers.

`files` (JSON, atomic writes, locks, damaged-file errors), `settings`
(`setting()`: each configuration field defined once, with its validation),
`compat` (the few private Keras / keras-tuner uses that have no public API)
and `cli` (flag definitions and the one-line errors of the command lines).
Nothing here imports Keras at import time, nor any other floor.
"""
