"""Listening sockets: --bind forms, systemd activation, SO_REUSEPORT sets."""
