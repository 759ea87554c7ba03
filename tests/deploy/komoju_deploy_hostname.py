"""``[core] hostname_callable`` for the Celery test: the name of the worker a task ran on.

In a deployment each worker container has its own host name; the test runs its two workers on one machine, so each
gets ``KOMOJU_DEPLOY_WORKER_NAME`` and this callable reports it as the task instance's ``hostname``.
"""

import os


def hostname() -> str:
    return os.environ["KOMOJU_DEPLOY_WORKER_NAME"]
