"""vipernet.netd."""
