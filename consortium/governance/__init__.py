"""The banks' signed roster in the portal: stored, relayed and enforced, never made valid here."""
