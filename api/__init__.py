"""The Docker Remote API served with FastAPI and uvicorn: v1.0–v1.6 exactly as Docker 0.6.5
served them, and v1.24–v1.47 in today's shapes (``api/http/versioning.py``); every endpoint
dispatches through ``moorage.core``."""

#: The newest legacy version: v1.0–v1.6 keep Docker 0.6.5's shapes, and unversioned paths get them.
API_VERSION = (1, 6)
API_VERSION_STR = "1.6"
#: The oldest and newest of today's versions served (``/v1.24/`` to ``/v1.47/``).
MODERN_MIN = (1, 24)
MODERN_MAX = (1, 47)
#: What ``/_ping`` and ``/version`` advertise, from which today's clients negotiate
#: (docs/api.md says why it is not yet ``1.47``).
ADVERTISED_VERSION_STR = "1.47"
