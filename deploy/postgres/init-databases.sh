#!/bin/sh
# One database per service, and the key vault every service shares (kizuna_keys, docs/data-rights.md). The postgres image runs this once, when its volume is first initialised,
# with POSTGRES_USER set and psql pointed at the server it is initialising; a non-zero exit aborts
# that first boot (and a restart would skip this script, so every statement must work the first time).
# The SQL goes through psql's standard input: `psql -c` cannot carry a meta-command such as \gexec.
# Safe to run again: only missing databases are created.
set -eu
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres <<'SQL'
SELECT format('CREATE DATABASE %I', wanted)
  FROM unnest(ARRAY['kizuna_members', 'kizuna_referrals', 'kizuna_sessions', 'kizuna_identity',
                    'kizuna_notifications', 'kizuna_gateway', 'kizuna_keys']) AS wanted
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = wanted)
\gexec
SQL
