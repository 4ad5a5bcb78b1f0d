"""Shared REST plumbing: the one error shape, bank authentication, permissions."""
