"""Held-out evaluation of policies on recoverygym environments: metrics, policies, runner, reports, viewer.

Importing this package never imports torch or transformers: only the transformers model policy does, when built.
The command-line entry points are :func:`training.evaluation.cli.main` (``recoverygym eval`` / ``recoverygym report``).
"""
