-- dkd schema 1 on PostgreSQL: the key space of the sled store (record layouts of sled schema 5,
-- see src/store/mod.rs), so both backends share one codec and one logic per record kind.
-- Keys are compared as bytes (bytea order is memcmp order, sled's order).
CREATE TABLE dkd_index (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE dkd_meta (k bytea PRIMARY KEY, v bytea NOT NULL);
-- Always empty: change sets are PostgreSQL transactions, there is no undo journal.
CREATE TABLE dkd_journal (k bytea PRIMARY KEY, v bytea NOT NULL);
-- Outbox and signal sequence numbers: only grow, shared by every instance.
CREATE SEQUENCE dkd_ids;
-- The audit trail of every instance, by day (retention deletes whole days).
CREATE TABLE dkd_audit (
    day date NOT NULL,
    at bigint NOT NULL,
    id bigserial NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (day, id)
);
CREATE INDEX dkd_audit_at ON dkd_audit (at, id);
