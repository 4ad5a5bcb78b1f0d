"""Views of the portal, one module per area; each is thin: a selector or a service, a template."""
