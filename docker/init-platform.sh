#!/bin/bash
# First start of the postgres service: the platform database and its least-privilege roles (R4).
#   owner   owns the database and its schemas; runs `python -m sapnhap migrate` (the airflow-init service)
#   loader  the nightly's Airflow connection: in group sapnhap_loader (no DDL, append-only audit trail)
#   analyst, auditor: read-only logins in groups sapnhap_analyst / sapnhap_auditor
# The migrate step (re)grants the groups' privileges on the tables it creates (sapnhap.platform).
# Values travel as psql variables (:'x' quotes a literal, :"x" an identifier): a quote in a
# password cannot break the SQL.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v db="$PLATFORM_DB" \
    -v owner="$PLATFORM_OWNER_USER" -v owner_pw="$PLATFORM_OWNER_PASSWORD" \
    -v loader="$PLATFORM_LOADER_USER" -v loader_pw="$PLATFORM_LOADER_PASSWORD" \
    -v analyst="$PLATFORM_ANALYST_USER" -v analyst_pw="$PLATFORM_ANALYST_PASSWORD" \
    -v auditor="$PLATFORM_AUDITOR_USER" -v auditor_pw="$PLATFORM_AUDITOR_PASSWORD" <<'SQL'
CREATE ROLE sapnhap_loader NOLOGIN;
CREATE ROLE sapnhap_analyst NOLOGIN;
CREATE ROLE sapnhap_auditor NOLOGIN;
CREATE ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_pw';
CREATE ROLE :"loader" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'loader_pw' IN ROLE sapnhap_loader;
CREATE ROLE :"analyst" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'analyst_pw' IN ROLE sapnhap_analyst;
CREATE ROLE :"auditor" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'auditor_pw' IN ROLE sapnhap_auditor;
CREATE DATABASE :"db" OWNER :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO sapnhap_loader, sapnhap_analyst, sapnhap_auditor;
SQL
