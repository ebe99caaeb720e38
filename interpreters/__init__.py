"""Interpreters: they carry out the core's commands.

* ``durable_jobs.interpreters.memory`` — dicts, a heap of alarms and a virtual clock.
"""

__all__: list[str] = []
