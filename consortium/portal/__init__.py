"""The web portal: pages for operators, auditors and bank representatives."""
