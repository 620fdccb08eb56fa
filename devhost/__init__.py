"""A development host for Azure Functions Python apps (v2 programming model).

This is a development tool, not a production path. It serves a ``func.FunctionApp`` the way
``func start`` (Azure Functions Core Tools) does, for machines where Core Tools is not
installed: it reads the same function metadata the real host reads (``app.get_functions()``),
serves HTTP triggers with uvicorn and Starlette, drives queue triggers from Azure Storage
(Azurite locally) with the host's rules from host.json, runs timer triggers on their
schedules, and answers the host's admin API for running a function now. In Azure, the
Functions host runs the app; nothing here is deployed.

Run ``python -m devhost --help``.
"""
