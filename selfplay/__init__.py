"""selfplay: Challenger–Solver self-play data generation for LLM reasoning."""

__version__ = "0.1.0"
