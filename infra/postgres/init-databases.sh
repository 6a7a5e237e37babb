#!/usr/bin/env bash
# Create one login role and one database per service (prefect, mlflow), each owned by
# its role and closed to the other. The postgres image runs this once, on an empty data
# volume: a password changed in infra/.env later must also be changed with ALTER ROLE.
set -euo pipefail

: "${PREFECT_DB_PASSWORD:?PREFECT_DB_PASSWORD is not set}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set}"

create_database() {
    local name="$1" password="$2"
    # psql's :'var' quotes the value as a literal, so any character is safe in a password.
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -v name="$name" -v password="$password" <<-'EOSQL'
	CREATE ROLE :"name" LOGIN PASSWORD :'password';
	CREATE DATABASE :"name" OWNER :"name";
	REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
	EOSQL
}

create_database prefect "$PREFECT_DB_PASSWORD"
create_database mlflow "$MLFLOW_DB_PASSWORD"
