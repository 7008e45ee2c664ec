"""tornado_run.decorators: offloading blocking and CPU-bound work; knows nothing of forking.

`@unblock` sends a function to a thread or process pool and returns its result to the event
loop; `background()` starts fire-and-forget jobs; `pools` declares and inspects the pools.
"""

from . import pools
from .cancellation import check_cancelled
from .disconnect import cancel_on_disconnect
from .errors import Overloaded, TaskCancelled, TaskTimeout, WorkerCrashed
from .jobs import background
from .run_on_executor import run_on_executor
from .shutdown import hook_in_at_first_use
from .unblock import unblock

hook_in_at_first_use()

__all__ = [
    "Overloaded",
    "TaskCancelled",
    "TaskTimeout",
    "WorkerCrashed",
    "background",
    "cancel_on_disconnect",
    "check_cancelled",
    "pools",
    "run_on_executor",
    "unblock",
]
