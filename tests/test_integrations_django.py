"""Django: the middleware attributes every query of a request to its actor, in autocommit and in
transactions (a savepoint rolled back included), with Django's own test client, a real PostgreSQL
and Django's psycopg pool shared by concurrent requests; nothing carries over to the next request."""

from __future__ import annotations

import threading

import django
import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django.http import HttpResponse
from django.urls import path


def who(request) -> dict[str, str | None]:
    return {"actor_id": request.headers.get("x-user"), "tenant_id": request.headers.get("x-tenant")}


def autocommit_view(request, n: int) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT audit.record(kind => 'django.auto', target_id => %s)", [str(n)])
    return HttpResponse("ok")


def atomic_view(request, n: int) -> HttpResponse:
    with transaction.atomic(), connection.cursor() as cursor:
        try:
            with transaction.atomic():  # a savepoint whose rollback undoes what was set inside it
                cursor.execute("SELECT 1")
                raise RuntimeError
        except RuntimeError:
            pass
        cursor.execute("SELECT audit.record(kind => 'django.atomic', target_id => %s)", [str(n)])
    return HttpResponse("ok")


urlpatterns = [path("auto/<int:n>", autocommit_view), path("atomic/<int:n>", atomic_view)]


@pytest.fixture
def django_app(db):
    if settings.configured:
        pytest.skip("Django was configured by an earlier test of this process")
    info = db.info
    settings.configure(
        DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, INSTALLED_APPS=[], USE_TZ=True,
        MIDDLEWARE=["pgaudit_py.integrations.django.AuditContextMiddleware"], PGAUDIT_CONTEXT=f"{__name__}.who",
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": info.dbname, "USER": "app_writer",
                               "HOST": info.host, "PORT": str(info.port),
                               "OPTIONS": {"pool": {"min_size": 1, "max_size": 2}}}})
    django.setup()
    yield
    connections.close_all()


def test_each_request_names_its_own_actor_through_a_shared_pool(db, django_app):
    from django.test import Client

    errors: list[BaseException] = []

    def client_thread(first: int) -> None:
        try:
            client = Client()
            for n in range(first, 60, 6):
                headers = {"x-user": f"u{n}", "x-tenant": f"t{n % 3}"} if n % 4 else {}
                view = "atomic" if n % 2 else "auto"
                assert client.get(f"/{view}/{n}", headers=headers, REMOTE_ADDR="198.51.100.4").status_code == 200
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = db.execute("SELECT target_id, kind, actor_type, actor_id, tenant_id, host(client_addr) FROM audit.events"
                      " WHERE kind LIKE 'django.%' ORDER BY target_id::int").fetchall()
    assert len(rows) == 60
    for target, kind, actor_type, actor_id, tenant, client in rows:
        n = int(target)
        assert kind == ("django.atomic" if n % 2 else "django.auto") and client == "198.51.100.4"
        if n % 4:
            assert (actor_type, actor_id, tenant) == ("user", f"u{n}", f"t{n % 3}"), (n, kind)
        else:  # no actor given: the database role, never an earlier request's user
            assert (actor_type, actor_id, tenant) == ("db_role", "app_writer", None), (n, kind)
    # Work outside any request (a management command, a thread of its own) on the pool's connections
    # finds nothing of the last request there.
    client = Client()
    for n in range(4):
        assert client.get(f"/auto/{100 + n}", headers={"x-user": "last-one"}).status_code == 200
        with connection.cursor() as cursor:
            cursor.execute("SELECT audit.record(kind => 'django.outside')")
        connections.close_all()
    outside = db.execute("SELECT DISTINCT actor_type, actor_id FROM audit.events WHERE kind = 'django.outside'")
    assert outside.fetchall() == [("db_role", "app_writer")]
