"""The portal's side of the audit trail: its REST API, report data and export command."""
