"""The web portal: pages for operators, auditors and bank representatives.

Pages (mounted at ``/``; sign-in at ``/login/``):

- ``/``: consortium overview (members, the round in flight with live progress, recent
  failures and refused uploads); a representative is sent to their own bank's page.
- ``/rounds/``, ``/rounds/<n>/``: history and detail, with server-rendered SVG plots of
  the self-reported AUPRC (per bank and the consortium mean) and of ε when reported.
- ``/banks/``, ``/banks/new``, ``/banks/<slug>/``: onboarding, status, credential and
  signing-key rotation, representatives, participation and reported metrics.
- ``/policies/``: versions, a new version from an existing one, activation.
- ``/audit/``: the trail with filters, chain verification, links to the REST export.

Roles (``access.py``): operators (superusers or group "operators") may do everything;
auditors (group "auditors") read every page and may not POST anything; a bank
representative (``BankRepresentative``) sees their own bank's page and the policies.
Every change goes through the domain services; the portal only adds audit events of its
own through ``audit.services.audit_record`` (a credential shown, a representative linked).

Static files: one stylesheet and one small script, served by WhiteNoise from the app
directory (``WHITENOISE_USE_FINDERS``), so no ``collectstatic`` and no build step.
"""
