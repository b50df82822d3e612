-- 002: the directory of Entra ID principals used to resolve actors at ingest.
-- A cache refreshed by `auditlog identity sync`, not an audit entry: rows are updated and
-- removed as the directory changes, so the writer may UPDATE and DELETE here (and only here).
CREATE TABLE principals (
    object_id       uuid        PRIMARY KEY,
    type            text        NOT NULL CHECK (type IN ('user', 'service')),
    upn             text,
    mail            text,
    display_name    text,
    tenant_id       text,
    app_id          text,
    account_enabled boolean,
    source          text        NOT NULL CHECK (source IN ('graph', 'csv', 'demo')),
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX principals_upn ON principals ((lower(upn)));
CREATE INDEX principals_mail ON principals ((lower(mail)));
CREATE INDEX principals_app_id ON principals (app_id);
CREATE INDEX principals_source ON principals (source, tenant_id, synced_at);

ALTER TABLE principals OWNER TO auditlog_owner;
REVOKE ALL ON principals FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON principals TO auditlog_writer;
GRANT SELECT ON principals TO auditlog_reader;
