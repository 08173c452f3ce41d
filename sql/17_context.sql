-- Who is acting: the application's context settings (pgaudit_py.*), the database role, the
-- client's address. Internal helpers, inlined by their callers.

-- A setting from the application's context, NULL when unset or empty.
CREATE OR REPLACE FUNCTION @schema@._context(name text)
RETURNS text
LANGUAGE sql
STABLE
AS $$ SELECT NULLIF(pg_catalog.current_setting('pgaudit_py.' || name, true), '') $$;
COMMENT ON FUNCTION @schema@._context(text) IS
    'The transaction-local setting pgaudit_py.<name>, or NULL.';

-- The database role that is acting: SET ROLE if used, else the login role. Reliable inside
-- SECURITY DEFINER functions, where current_user is the owner.
CREATE OR REPLACE FUNCTION @schema@._db_role()
RETURNS text
LANGUAGE sql
STABLE
AS $$
    SELECT CASE WHEN pg_catalog.current_setting('role') = 'none' THEN session_user::text
                ELSE pg_catalog.current_setting('role') END
$$;
COMMENT ON FUNCTION @schema@._db_role() IS 'The acting database role (SET ROLE, else the session user).';

CREATE OR REPLACE FUNCTION @schema@._parse_client_addr(given text)
RETURNS inet
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    addr inet;
BEGIN
    BEGIN  -- a subtransaction, paid only when the application names an address
        addr := given::inet;
    EXCEPTION WHEN invalid_text_representation THEN
        addr := NULL;
    END;
    -- One host: a network (10.0.0.0/8, 0.0.0.0/0) names no client (tests/test_trust_attacks_72.py),
    -- nor does an address no client sends from: unspecified, broadcast, multicast (_73.py), or the
    -- IPv4-compatible IPv6 form (::a.b.c.d, deprecated; _74.py), but for the loopback ::1.
    IF addr IS NULL OR pg_catalog.masklen(addr) OPERATOR(pg_catalog.<>)
                       (CASE pg_catalog.family(addr) WHEN 4 THEN 32 ELSE 128 END)
       OR addr OPERATOR(pg_catalog.=) ANY ('{0.0.0.0, ::, 255.255.255.255, ::ffff:0.0.0.0, ::ffff:255.255.255.255}'::inet[])
       OR addr OPERATOR(pg_catalog.<<) ANY ('{224.0.0.0/4, ff00::/8, ::ffff:224.0.0.0/100}'::inet[])
       OR (addr OPERATOR(pg_catalog.<<) '::/96'::inet AND addr OPERATOR(pg_catalog.<>) '::1'::inet) THEN
        RAISE EXCEPTION 'pgaudit_py.client_addr is not an IP address'  -- not repeated: messages end up in logs
            USING ERRCODE = 'PA007';
    END IF;
    RETURN addr;
END
$$;
COMMENT ON FUNCTION @schema@._parse_client_addr(text) IS
    'The address an application named in pgaudit_py.client_addr; PA007 if it is not one host''s address.';

-- SQL, so that callers (record, every capture trigger) inline it: the common case, no address
-- named, costs no function call.
CREATE OR REPLACE FUNCTION @schema@._client_addr()
RETURNS inet
LANGUAGE sql
STABLE
AS $$
    SELECT CASE WHEN @schema@._context('client_addr') IS NULL THEN pg_catalog.inet_client_addr()
                ELSE @schema@._parse_client_addr(@schema@._context('client_addr')) END
$$;
COMMENT ON FUNCTION @schema@._client_addr() IS
    'Client address from pgaudit_py.client_addr, else the connection''s own address.';
