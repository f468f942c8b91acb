"""pmctl: run, measure and plot straggler-resilient pipeline training (PipeMorph, NSDI'26)."""

__version__ = "0.1.0"
