"""The throughput/memory/parse benchmark (``make bench``, docs/performance.md); never imported by the product."""
