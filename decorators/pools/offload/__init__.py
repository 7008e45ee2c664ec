"""The offload transport: how calls reach pool processes and come back.

- `wire`: frames on AF_UNIX stream sockets (`frame`: the frame and its header) with pickle
  protocol 5 bodies whose large buffers travel in one memfd per frame (`payload`; fd
  passing, no copies through the socket).
- `child`: a pool process's loop (initializer once, then one call at a time).
- `zygote`: the clean process that forks pool processes (`Zygote`, a `Spawner`).
- `dispatcher`: one pool's `Dispatcher` on an asyncio loop (`calls`: what it keeps per call
  and per process): queue, one call per process, deadlines that kill, crash isolation,
  cancellation, replacement. It moves opaque frames, so it runs in the caller's process (the
  "process" pool kind) and in the CPU tier's broker.
"""
