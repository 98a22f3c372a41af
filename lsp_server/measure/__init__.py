"""`codetailor bench`: latency measured the way a user feels it, through the real server."""
