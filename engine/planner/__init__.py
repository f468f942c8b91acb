"""Planning: schedule IR, generators, event-driven simulator, adaptation rule, ILP. No torch."""
