#!/usr/bin/env bash
# Postgres container init (/docker-entrypoint-initdb.d, run once on an empty data directory): creates the komoju
# status database beside Airflow's metadata database, owned by its own login role. Idempotent. The values come from
# the environment (KOMOJU_DB_NAME, KOMOJU_DB_USER, KOMOJU_DB_PASSWORD) and reach SQL only as psql variables, quoted
# by format(%I / %L): never pasted into the statement text, never on a command line.
set -eo pipefail
: "${KOMOJU_DB_NAME:?KOMOJU_DB_NAME is not set}"
: "${KOMOJU_DB_USER:?KOMOJU_DB_USER is not set}"
: "${KOMOJU_DB_PASSWORD:?KOMOJU_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" <<'SQL'
\getenv komoju_db KOMOJU_DB_NAME
\getenv komoju_user KOMOJU_DB_USER
\getenv komoju_password KOMOJU_DB_PASSWORD
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'komoju_user', :'komoju_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'komoju_user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'komoju_db', :'komoju_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'komoju_db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'komoju_db') \gexec
SQL
echo "komoju status database '${KOMOJU_DB_NAME}' owned by '${KOMOJU_DB_USER}': ready"
