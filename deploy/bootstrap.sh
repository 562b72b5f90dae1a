#!/bin/sh
# Creates (and rotates) the secrets docker compose needs. Run from anywhere; it works in the checkout.
#
#   sh deploy/bootstrap.sh [PUBLIC_URL]   first time: writes the files below
#   sh deploy/bootstrap.sh rotate-jwt-key  new token signing key; the old public key stays accepted
#   sh deploy/bootstrap.sh drop-old-jwt-keys   once tokens signed with the old key have expired
#   sh deploy/bootstrap.sh identity-env   a deployment made before the identity service: the email file
#
# Files (mode 0600 unless said, ignored by git):
#   .env                 read by docker compose itself for ${...} in docker-compose.yml (POSTGRES_PASSWORD)
#   deploy/kizuna.env    every service: operator token, public keys, public URL, tracing
#   deploy/gateway.env   the gateway only: its private keys (JWT signing, federation)
#   deploy/identity.env  the services that write to people only, identity (sign-in links) and notifications:
#                        SMTP server and password, to be filled in by the operator (placeholders until
#                        then: no email is sent). Its name is kept for existing deployments.
#   deploy/prometheus/metrics-token   Prometheus (profile observability): KIZUNA_METRICS_TOKEN again,
#                        mode 0644, not 0600 (see METRICS_TOKEN below)
# Needs: openssl 1.1.1+ (Ed25519), awk. It never overwrites a secret it did not mean to change.
set -eu
umask 077
cd "$(dirname "$0")/.."

ENV_FILE=.env
SHARED=deploy/kizuna.env
GATEWAY=deploy/gateway.env
IDENTITY=deploy/identity.env
# The bearer token Prometheus scrapes GET /metrics with (deploy/prometheus/prometheus.yml). The
# Prometheus container runs as nobody (uid 65534), not as the operator who owns this file, so the file
# must be readable by others: 0644. The token only lets one read the figures of /metrics.
METRICS_TOKEN=deploy/prometheus/metrics-token

fail() { echo "bootstrap: $*" >&2; exit 1; }

# A PEM on one line with a literal \n between its lines: the form env files carry and Kizuna reads.
one_line() { awk '{printf "%s\\n", $0}'; }
new_private_key() { openssl genpkey -algorithm ed25519 | one_line; }
public_of() { printf '%b' "$1" | openssl pkey -pubout | one_line; }
value_of() { sed -n "s/^$1=//p" "$2" | tail -n 1; }

# Replaces NAME's line in FILE with NAME=VALUE (VALUE read from the environment, so no \ is interpreted).
set_value() {
  name=$1 file=$2
  NEW_VALUE=$3 awk -v name="$name" 'BEGIN { line = name "=" ENVIRON["NEW_VALUE"] }
    index($0, name "=") == 1 { print line; done = 1; next } { print }
    END { if (!done) print line }' "$file" > "$file.new"
  mv "$file.new" "$file"
}

check_compose() {
  # Compose v2 (the `docker compose` plugin) is required: v1 (`docker-compose` 1.x) rejects `name:`
  # and reads env files differently. Secrets may be made on another machine: no docker here is fine.
  command -v docker > /dev/null 2>&1 || { echo "bootstrap: no docker here; deploy with Docker Compose v2"; return 0; }
  version=$(docker compose version --short 2> /dev/null) || \
    fail "Docker Compose v2 is required ('docker compose version' failed; docker-compose 1.x is not supported)"
  case $version in
    v1.* | 1.*) fail "Docker Compose v2 is required (found $version)" ;;
  esac
}

# The email settings of the services that write to people (identity and notifications), with placeholders
# the operator replaces with their provider's (deploy/identity.env.example explains each). The sender's domain
# is the public URL's host.
identity_env() {
  host=$(printf '%s' "$1" | sed -e 's#^[A-Za-z]*://##' -e 's#[:/].*##')
  cat <<EOF
# Only the services that write to people read this (identity: sign-in links; notifications): how they send
# email. Fill in your provider's values, then: docker compose up -d --wait. Never commit it.
KIZUNA_SMTP_HOST=smtp.example.org
KIZUNA_SMTP_PORT=587
KIZUNA_SMTP_SECURITY=starttls
KIZUNA_SMTP_USERNAME=
KIZUNA_SMTP_PASSWORD=
KIZUNA_SMTP_SENDER=Kizuna <no-reply@$host>
EOF
}

init() {
  public_url=${1:-http://localhost:8000}
  for file in $ENV_FILE $SHARED $GATEWAY $IDENTITY $METRICS_TOKEN; do
    [ ! -e "$file" ] || fail "$file exists; refusing to overwrite it (remove it yourself to start over)"
  done
  check_compose
  jwt_key=$(new_private_key)
  federation_key=$(new_private_key)
  [ -n "$jwt_key" ] && [ -n "$federation_key" ] || fail "openssl could not make an Ed25519 key"
  metrics_token=$(openssl rand -hex 32)
  # Written under temporary names and moved at the end: a failure leaves no half-made secrets.
  cat > "$ENV_FILE.new" <<EOF
# For docker compose's own interpolation of docker-compose.yml; containers see only what it passes on.
POSTGRES_PASSWORD=$(openssl rand -hex 24)
KIZUNA_PORT=8000
EOF
  cat > "$SHARED.new" <<EOF
# Every Kizuna service reads this (see deploy/README.md). Never commit it.
KIZUNA_OPERATOR_TOKEN=kz-op-$(openssl rand -hex 32)
KIZUNA_JWT_PUBLIC_KEYS=$(public_of "$jwt_key")
KIZUNA_PUBLIC_URL=$public_url
KIZUNA_OTEL_EXPORTER=none
KIZUNA_METRICS_TOKEN=$metrics_token
EOF
  cat > "$GATEWAY.new" <<EOF
# The gateway's private keys; no other container receives them. Never commit it.
KIZUNA_JWT_PRIVATE_KEY=$jwt_key
KIZUNA_FEDERATION_PRIVATE_KEY=$federation_key
EOF
  identity_env "$public_url" > "$IDENTITY.new"
  printf '%s' "$metrics_token" > "$METRICS_TOKEN.new"
  chmod 0644 "$METRICS_TOKEN.new"
  mv "$ENV_FILE.new" "$ENV_FILE" && mv "$SHARED.new" "$SHARED" && mv "$GATEWAY.new" "$GATEWAY" && \
    mv "$IDENTITY.new" "$IDENTITY" && mv "$METRICS_TOKEN.new" "$METRICS_TOKEN"
  echo "bootstrap: wrote $ENV_FILE, $SHARED, $GATEWAY, $IDENTITY and $METRICS_TOKEN;" \
    "put your SMTP server in $IDENTITY, then: docker compose up -d --build"
}

add_identity_env() {
  [ -e "$SHARED" ] || fail "run 'sh deploy/bootstrap.sh' first"
  [ ! -e "$IDENTITY" ] || fail "$IDENTITY exists; refusing to overwrite it"
  identity_env "$(value_of KIZUNA_PUBLIC_URL "$SHARED")" > "$IDENTITY.new"
  mv "$IDENTITY.new" "$IDENTITY"
  echo "bootstrap: wrote $IDENTITY; put your SMTP server in it, then: docker compose up -d --build --wait"
}

rotate_jwt_key() {
  [ -e "$SHARED" ] && [ -e "$GATEWAY" ] || fail "run 'sh deploy/bootstrap.sh' first"
  new_key=$(new_private_key)
  # The new public key goes first (the gateway signs with it); the old ones stay accepted.
  set_value KIZUNA_JWT_PUBLIC_KEYS "$SHARED" "$(public_of "$new_key")$(value_of KIZUNA_JWT_PUBLIC_KEYS "$SHARED")"
  set_value KIZUNA_JWT_PRIVATE_KEY "$GATEWAY" "$new_key"
  echo "bootstrap: new JWT signing key; old tokens stay valid. Apply with: docker compose up -d"
}

drop_old_jwt_keys() {
  [ -e "$SHARED" ] && [ -e "$GATEWAY" ] || fail "run 'sh deploy/bootstrap.sh' first"
  set_value KIZUNA_JWT_PUBLIC_KEYS "$SHARED" "$(public_of "$(value_of KIZUNA_JWT_PRIVATE_KEY "$GATEWAY")")"
  echo "bootstrap: only the current JWT key is accepted now. Apply with: docker compose up -d"
}

case ${1:-} in
  rotate-jwt-key) rotate_jwt_key ;;
  drop-old-jwt-keys) drop_old_jwt_keys ;;
  identity-env) add_identity_env ;;
  -h | --help) sed -n '2,18p' "$0" ;;
  *) init "$@" ;;
esac
