"""Simulation tools: the multi-bank world generator, the portal's processes and the demo."""
