-- The PostgreSQL role and database both dkd nodes share (README "Running two nodes").
-- Run once as a superuser:  sudo -u postgres psql -v ON_ERROR_STOP=1 -v password='...' -f postgres-setup.sql
-- dkd creates its own tables in this database (`dkd store migrate`, or `dkd serve` at start-up),
-- so the role owns the database and nothing else: no superuser, no CREATEDB, no CREATEROLE.
CREATE ROLE dkd LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE dkd OWNER dkd ENCODING 'UTF8' TEMPLATE template0;
-- Nobody else connects or creates anything in it (PostgreSQL grants both to PUBLIC by default).
REVOKE ALL ON DATABASE dkd FROM PUBLIC;
\connect dkd
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO dkd;
