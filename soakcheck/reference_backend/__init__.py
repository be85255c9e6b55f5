"""A reference billing backend for soakcheck to watch.

It plays the part of a Node.js billing API: a JSON /health endpoint, Stripe
webhooks, a per-customer debt limit, BullMQ queues on a real Redis and a
pino-style JSON log file. With faults allowed it can be made to misbehave
on request, so that every checklist item can be seen failing.

Routes (the ones marked "bearer" require `Authorization: Bearer <token>`):

- GET /health
- GET /api/monitoring/queue-stats (bearer)
- POST /api/webhooks/stripe
- POST /api/billing/charges
- POST /api/billing/reconciliation (bearer)
- GET /api/billing/reconciliation/{jobId} (bearer)
- POST /api/recordings
- GET, DELETE /_faults and POST /_faults/{name}, only with faults allowed

Secrets come from STRIPE_WEBHOOK_SECRET, MONITORING_TOKEN and
REDIS_PASSWORD. The first two fall back to test-only values when unset.
"""

from .app import create_app
from .settings import Settings, settings_from_args

__all__ = ["Settings", "create_app", "settings_from_args"]
