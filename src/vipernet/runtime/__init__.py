"""vipernet.runtime."""
