#!/bin/bash
# First start of the postgres service: the platform database and its least-privilege loader role.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE "${PLATFORM_LOADER_USER}" LOGIN PASSWORD '${PLATFORM_LOADER_PASSWORD}';
CREATE DATABASE "${PLATFORM_DB}" OWNER "${PLATFORM_LOADER_USER}";
SQL
