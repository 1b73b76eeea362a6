"""vipernet.stack."""
