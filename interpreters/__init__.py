"""Interpreters: they carry out the core's commands.

* ``durable_jobs.interpreters.memory`` — dicts, a heap of alarms and a virtual clock.
* ``durable_jobs.interpreters.sqlite`` — one SQLite file, a worker, leases.

What an interpreter provides (the memory interpreter is the reference):

* a store of snapshots (``Persist``, ``Purge``) and one alarm per instance
  (``ScheduleAlarm``, ``ScheduleRetry``, ``CancelAlarm``), telemetry (``Emit``) and dead
  letters (``RecordDeadLetter``), all of one transition committed together;
* the run of user code (``RunUserCode``), whose outcome goes back to ``decide``;
* for WorkerPool shards, the queue primitive: pending ``QueueItem`` rows keyed by event
  id in an index ordered by ``(-priority, seq)`` (head, oldest by ``seq``, rank of one
  item), and ``FinishedEvent`` rows keyed by event id in finish-time order (expired
  ones, at most ``QueueReads.limit``). Before each ``decide`` on a shard the interpreter
  loads the ``QueueView`` that ``queue_reads(definition, input_, now)`` asks for and
  passes ``PoolView(snapshot, view)``; it applies ``PutQueueItem``, ``DeleteQueueItem``,
  ``TakeQueueItem`` (the head became the current event; its ``PutFinished`` always
  follows, so the row may be kept for it), ``ClearQueue``, ``PutFinished`` and
  ``DeleteFinished`` in the same commit as the snapshot. In SQLite an event is one row
  from enqueue to the end of its dedup retention, with partial indexes on
  ``(shard, -priority, seq)`` (pending) and ``(shard, finished_at)`` (finished); on
  Durable Objects, the object's SQL storage;
* ``dispatch_many`` for requests that start no user code, one per instance (a pool's
  ``enqueue_many``): all in one transaction where the store allows it.
"""

__all__: list[str] = []
