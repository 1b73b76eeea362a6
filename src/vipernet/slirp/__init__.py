"""vipernet.slirp."""
