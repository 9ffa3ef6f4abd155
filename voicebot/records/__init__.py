"""Call records that outlast Redis: what operators tune their flows with.

A finished call's record in Redis (``telephony.store``) lives a day; here it becomes rows in a
database (SQLite by default, PostgreSQL for more than one worker machine) that are kept for the
flow's retention time: the call (flow and version, times, outcome, intent, feedback), the steps it
visited, and every caller turn as the recogniser wrote it (secrets already redacted by the engine)
with what it was understood as. Only the RQ worker writes them (``records.jobs``); web nodes
enqueue a finished call and never open the database.

``schema`` holds the tables (the one source of their shape; Alembic's migrations create them),
``build`` turns a call store record into rows, ``store`` writes, purges and forgets, ``stats``
answers the operations page and ``voicebot report``, ``review`` keeps operators' verdicts on
sentences the assistant did not understand.
"""
