"""The audit trail: hash-chained events, written only through ``audit.services``."""
