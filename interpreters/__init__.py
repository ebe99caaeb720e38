"""Interpreters: they carry out the core's commands.

* ``durable_jobs.interpreters.engine``: the step loop every interpreter shares, over a
  ``Store`` (load an instance and its queue rows, commit one plan, claim due alarms).
* ``durable_jobs.interpreters.memory``: dicts, a heap of alarms and a virtual clock.
* ``durable_jobs.interpreters.sqlite``: one SQLite file, a worker, leases.
* ``durable_jobs.interpreters.clock``: the system clock and a manual one.
* ``durable_jobs.interpreters.worker``: ``serve`` a registry on a SQLite file (the
  ``durable-jobs worker`` command); ``cli``, ``demo`` and ``inspection``: the command line.

A new interpreter is a store for the engine. It keeps, per instance, a snapshot and
one alarm, and for WorkerPool shards the queue primitive: pending ``QueueItem`` rows
keyed by event id in an index ordered by ``(-priority, seq)`` (head, oldest by ``seq``,
rank of one item), and ``FinishedEvent`` rows keyed by event id in finish-time order
(expired ones, at most ``QueueReads.limit``). It commits each ``CommitPlan`` whole (the
snapshot, the alarm, the queue changes in order through ``apply_queue_changes``, the
dead letters and the telemetry) if the stored version is still the plan's
``expected_version``. It then passes the contract suite in ``tests/contract/`` and the
lockstep test against the memory interpreter.
"""

__all__: list[str] = []
