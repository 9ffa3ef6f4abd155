"""Warm transfer to a human agent: the jobs the RQ worker runs and the code that queues them."""
