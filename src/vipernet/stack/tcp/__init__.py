"""vipernet.stack.tcp."""
