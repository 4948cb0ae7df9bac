"""The SQS-compatible face (issue 14): SQS's JSON and query protocols over the same
queues, messages and claims as Zaqar's API. Transport in ``app.py`` / ``protocol.py``,
operations in ``queues.py`` / ``messages.py``, dispatched through ``operations.py``."""
