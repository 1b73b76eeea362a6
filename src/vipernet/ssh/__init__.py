"""vipernet.ssh."""
