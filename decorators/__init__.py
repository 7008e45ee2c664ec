"""tornado_run.decorators: offloading blocking and CPU-bound work; knows nothing of forking."""
