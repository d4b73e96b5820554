"""The Docker Remote API v1.6 served with FastAPI and uvicorn; every endpoint dispatches through
``moorage.core``."""

#: The API version this daemon serves; also the highest ``/vX.Y`` prefix accepted.
API_VERSION = (1, 6)
API_VERSION_STR = "1.6"
