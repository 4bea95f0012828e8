"""`python -m nuxtest.worker_drain [NODE]`: make a running worker stop taking tasks, before its SIGTERM.

A Celery worker's warm shutdown stops its event loop at once, but a receive it has already
asked the Redis broker for (a BRPOP, answered within kombu's one-second poll) still takes
the next task off the queue, and the stopping worker hands it back only when it closes its
broker connection, after its running tasks and pool processes are done: a round's deadline
sent in that second waited a second or more, though a new worker was up beside it (seen in
the e2e test of a worker hand-over). So `make deploy` (deploy/rollout.sh) first asks each
old worker to cancel its consumer, through Celery's remote control, while its loop still
runs — a task its last receive brings back is returned to the queue at once — waits out
that poll, and only then sends SIGTERM.

NODE is the worker's node name (`celery@<hostname>` by default, as in compose). Exit
status 1 when the worker does not answer.
"""

from __future__ import annotations

import socket
import sys
import time

# kombu's Redis transport asks for tasks with BRPOP and a timeout of 1 s (Channel.brpop_timeout).
BROKER_POLL_SECONDS = 1.0
REPLY_TIMEOUT_SECONDS = 5.0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    node = args[0] if args else f"celery@{socket.gethostname()}"
    from nuxtest.celery import app

    queue = app.conf.task_default_queue
    replies = app.control.cancel_consumer(
        queue, destination=[node], reply=True, timeout=REPLY_TIMEOUT_SECONDS
    )
    if not replies:
        print(f"worker_drain: {node} did not answer", file=sys.stderr)
        return 1
    print(f"worker_drain: {node} stopped taking tasks from {queue}")
    # Its receive already under way comes back within the poll; its loop still runs to hand
    # the task back. Then SIGTERM finds nothing of the queue in its hands.
    time.sleep(BROKER_POLL_SECONDS + 0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
