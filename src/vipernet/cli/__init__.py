"""vipernet.cli."""
