"""How master and workers talk (scoreboard, events) and how operators see them."""
