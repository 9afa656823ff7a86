"""Test environment: production settings except what plain-HTTP test servers need.

Set here, before Django reads its settings, so the suite runs against the real settings module
(PostgreSQL / Redis when DATABASE_URL / REDIS_URL are set, SQLite / in-memory otherwise).
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
    os.environ.setdefault(name, "False")  # the live test servers speak plain HTTP
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
os.environ.setdefault("SMS_BACKEND", "alerts.sms.LocmemSmsBackend")
# Deliver notifications inline, so a test sees the outcome of the first attempt.
os.environ.setdefault("NOTIFICATIONS_ASYNC", "False")
