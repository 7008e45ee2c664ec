"""The supervising master: its loop and the collaborators it calls by name."""
