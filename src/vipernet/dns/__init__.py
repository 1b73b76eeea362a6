"""vipernet.dns."""
