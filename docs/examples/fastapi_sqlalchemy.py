"""FastAPI with SQLAlchemy: every transaction a request runs names the request's user and tenant.
(pip install 'pgaudit_py[asgi,sqlalchemy]' fastapi; tests/test_integrations.py runs this file.)"""

import os

from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

from pgaudit_py.integrations.asgi import AuditContextMiddleware
from pgaudit_py.integrations.sqlalchemy import audit_sessions


class AuditedSession(Session):
    pass


audit_sessions(AuditedSession)
engine = create_async_engine(os.environ["DATABASE_URL"])  # postgresql+psycopg://app@db/app
Sessions = async_sessionmaker(engine, sync_session_class=AuditedSession)

app = FastAPI()
app.add_middleware(AuditContextMiddleware, context=lambda request: {
    "actor_id": request.headers.get("x-user"), "tenant_id": request.headers.get("x-tenant"),
    "correlation_id": request.headers.get("x-request-id")})


@app.post("/orders/{order_id}/refund")
async def refund(order_id: str, request: Request) -> dict[str, str]:
    async with Sessions() as session, session.begin():
        await session.execute(text("SELECT audit.record(kind => 'order.refunded', target_type => 'order',"
                                   " target_id => :id)"), {"id": order_id})
    return {"refunded": order_id}
