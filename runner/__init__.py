"""tornado_run.runner: the launcher. Processes and sockets; knows nothing of pools."""

__version__ = "0.1.0"
