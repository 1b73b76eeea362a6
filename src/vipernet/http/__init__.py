"""vipernet.http."""
