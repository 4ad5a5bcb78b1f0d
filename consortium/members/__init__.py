"""Member banks: onboarding, status, API credentials and Ed25519 signing keys."""
