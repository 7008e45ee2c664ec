"""A worker process: after-fork setup, the loop, the HTTP server and its drain."""
