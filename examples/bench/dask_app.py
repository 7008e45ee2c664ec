"""The benchmark's CPU endpoint on a dask cluster: `/slow` runs `burn(SLOW_MS)` through the
pool named "cluster", beside `/fast`. Declare that pool in the config file:

    # dask.toml
    [pools.cluster]
    kind = "dask"
    address = "tcp://127.0.0.1:8786"

    dask scheduler --host 127.0.0.1 --port 8786 &
    PYTHONPATH=. dask worker tcp://127.0.0.1:8786 --nworkers 2 --nthreads 1 &
    tornado-run examples.bench.dask_app:application --workers auto --config dask.toml

The dask workers import `examples.cpu` to run the calls, hence PYTHONPATH.
"""

from __future__ import annotations

import tornado.web
from tornado_run.decorators import unblock

from examples.bench.apps import SLOW_MS, Fast
from examples.cpu import burn

# --8<-- [start:cluster]
POOL = "cluster"


@unblock(pool=POOL)
def slow_on_cluster(ms: int) -> int:
    """The CPU task, run by a dask worker."""
    return burn(ms)


class SlowOnCluster(tornado.web.RequestHandler):
    async def get(self) -> None:
        self.write({"checksum": await slow_on_cluster(SLOW_MS)})


# --8<-- [end:cluster]


application = tornado.web.Application([(r"/fast", Fast), (r"/slow", SlowOnCluster)])
