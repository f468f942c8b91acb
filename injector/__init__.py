"""Fault traces, the Redis control-plane client, and how a delay is applied per p2p path."""
