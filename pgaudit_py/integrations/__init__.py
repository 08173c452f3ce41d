"""Request context from web frameworks and ORMs (each an extra): asgi (Starlette, FastAPI),
sqlalchemy (sessions)."""
