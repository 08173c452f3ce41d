"""Django: the middleware attributes every query of a request to its actor, in autocommit and in
transactions (a savepoint rolled back included), with Django's own test client, a real PostgreSQL
and Django's psycopg pool shared by concurrent requests; a connection closed and reopened mid-request,
given back to the pool, or a streamed body: nothing carries over, nothing is lost. (The helper's
attack run found the last three; they are kept here.)"""

from __future__ import annotations

import contextlib
import threading

import django
import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django.http import HttpResponse, StreamingHttpResponse
from django.test.utils import override_settings
from django.urls import path
from trial_helpers import forget_django_pools


def who(request) -> dict[str, str | None]:
    return {"actor_id": request.headers.get("x-user"), "tenant_id": request.headers.get("x-tenant")}


def record(kind: str, target: str | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT audit.record(kind => %s, target_id => %s)", [kind, target])


def autocommit_view(request, n: int) -> HttpResponse:
    record("django.auto", str(n))
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


def close_midway_view(request) -> HttpResponse:
    record("dj.before_close")
    connection.close()  # a long view letting go of its connection, as Django recommends
    record("dj.after_close")
    return HttpResponse("ok")


def close_at_end_view(request) -> HttpResponse:
    record("dj.in_request")
    connection.close()  # the pooled connection goes back mid-request
    return HttpResponse("ok")


def streaming_view(request) -> StreamingHttpResponse:
    def body():
        record("dj.streamed")  # runs as the response is sent: still this request's work
        yield b"done"
    return StreamingHttpResponse(body())


urlpatterns = [path("auto/<int:n>", autocommit_view), path("atomic/<int:n>", atomic_view),
               path("close_midway", close_midway_view), path("close_at_end", close_at_end_view),
               path("stream", streaming_view)]


@pytest.fixture
def django_site(db):
    """Django, configured once a process, pointed at this test's database: site(pool=N) with Django's
    psycopg pool of N connections, site(pool=None) with persistent connections."""

    def site(pool: int | None) -> None:
        info = db.info
        conf = {"ENGINE": "django.db.backends.postgresql", "NAME": info.dbname, "USER": "app_writer",
                "HOST": info.host, "PORT": str(info.port),
                "OPTIONS": {"pool": {"min_size": 1, "max_size": pool}} if pool else {},
                "CONN_MAX_AGE": 0 if pool else None}
        if not settings.configured:
            settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, INSTALLED_APPS=[],
                               USE_TZ=True, MIDDLEWARE=["pgaudit_py.integrations.django.AuditContextMiddleware"],
                               PGAUDIT_CONTEXT=f"{__name__}.who", DATABASES={"default": conf})
            django.setup()
        else:
            connections.close_all()
            forget_django_pools()
            settings.DATABASES["default"].clear()
            settings.DATABASES["default"].update(conf)
            connections.settings = connections.configure_settings(settings.DATABASES)
        # Configured once a process, perhaps by another test module first: this module's views and
        # context function, whoever configured it, until the test ends.
        overridden.enter_context(override_settings(
            ROOT_URLCONF=__name__, PGAUDIT_CONTEXT=f"{__name__}.who",
            MIDDLEWARE=["pgaudit_py.integrations.django.AuditContextMiddleware"]))

    with contextlib.ExitStack() as overridden:
        yield site
    connections.close_all()
    connections["default"].close_pool()


def test_each_request_names_its_own_actor_through_a_shared_pool(db, django_site):
    from django.test import Client

    django_site(pool=2)
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
        record("django.outside")
        connections.close_all()
    outside = db.execute("SELECT DISTINCT actor_type, actor_id FROM audit.events WHERE kind = 'django.outside'")
    assert outside.fetchall() == [("db_role", "app_writer")]


@pytest.mark.parametrize("pool", [1, None], ids=["pool", "persistent"])
def test_a_connection_closed_mid_request_loses_nothing_and_carries_nothing(db, django_site, pool):
    from django.test import Client

    django_site(pool)
    assert Client().get("/close_midway", headers={"x-user": "alice"}).status_code == 200
    assert Client().get("/close_at_end", headers={"x-user": "alice"}).status_code == 200
    record("dj.outside")  # no request: on the connection the last request gave back
    rows = dict(db.execute("SELECT kind, actor_id FROM audit.events WHERE kind LIKE 'dj.%'").fetchall())
    assert rows == {"dj.before_close": "alice", "dj.after_close": "alice", "dj.in_request": "alice",
                    "dj.outside": "app_writer"}


@pytest.mark.parametrize("pool", [1, None], ids=["pool", "persistent"])
def test_a_streamed_body_and_an_ipv6_client_with_a_zone(db, django_site, pool):
    from django.test import Client

    django_site(pool)
    response = Client().get("/stream", headers={"x-user": "alice"}, REMOTE_ADDR="fe80::1%eth0")
    assert b"".join(response.streaming_content) == b"done"
    response.close()
    assert db.execute("SELECT actor_id, host(client_addr) FROM audit.events WHERE kind = 'dj.streamed'"
                      ).fetchall() == [("alice", "fe80::1")]
