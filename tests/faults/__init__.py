"""Fault injection for tests: kill a real trainer at named points of its writes."""
