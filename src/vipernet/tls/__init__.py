"""vipernet.tls."""
