"""guard: streaming guardrail middleware for LLM output."""
