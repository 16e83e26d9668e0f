"""Pieces shared by the dashboard and the developer portal (credentials today; templates, CSRF
and sessions as the web UIs arrive). The gateway never imports this package."""
