"""vipernet.wire."""
