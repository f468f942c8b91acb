"""Point-to-point paths between neighbouring stages: inline (compute thread, main group) and
delegates (worker threads, own gloo groups, host memory). Both carry the same messages."""
