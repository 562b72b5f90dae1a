#!/bin/sh
# One database per service; runs once, when the postgres volume is first initialised.
set -eu
for db in kizuna_members kizuna_referrals kizuna_sessions kizuna_gateway; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -c "SELECT 'CREATE DATABASE $db' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db')\gexec"
done
