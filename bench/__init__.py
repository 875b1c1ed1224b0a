"""`make bench`: throughput and latency figures of the gateway against a bare baseline."""
