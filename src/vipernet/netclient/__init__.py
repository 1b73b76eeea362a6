"""vipernet.netclient."""
