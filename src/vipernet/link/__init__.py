"""vipernet.link."""
