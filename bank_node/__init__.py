"""The bank node: the agent each bank runs next to its own data."""
