"""WSGI entry point (gunicorn settings.wsgi): Django's handler, with the payment provider's webhooks served with a
short middleware list (enrollment/handler.py)."""
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
django.setup(set_prefix=False)  # as django.core.wsgi.get_wsgi_application does

from enrollment.handler import SiteHandler  # noqa: E402  (after django.setup: it reads the URLconf)

application = SiteHandler()
