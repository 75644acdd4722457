#!/bin/sh
# Issues the demo receiver's TLS material for the compose stack: a throw-away CA (ca.pem, which
# the sinks trust through `tls.ca_file`) and a server certificate for the host names the sinks
# use (cert.pem, key.pem). `auditstream receiver --tls-dir DIR` loads these three files when they
# exist. Its own generator would issue a certificate for localhost and 127.0.0.1 only, which a
# sink in another container (connecting to https://receiver:8443) rightly refuses.
#
#   issue-receiver-cert.sh DIR [HOST...]    (default HOST: receiver localhost)
#
# Does nothing when DIR already holds all three files. Demo only: a real destination has a
# certificate from its own PKI.
set -eu

dir=${1:?usage: issue-receiver-cert.sh DIR [HOST...]}
shift
[ "$#" -gt 0 ] || set -- receiver localhost

if [ -s "$dir/ca.pem" ] && [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ]; then
  echo "receiver TLS material already present in $dir"
  exit 0
fi

san=""
for host in "$@"; do
  san="${san:+$san,}DNS:$host"
done
san="$san,IP:127.0.0.1"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

cat >"$work/ca.ext" <<CONF
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CONF
cat >"$work/server.ext" <<CONF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CONF

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca-key.pem" 2>/dev/null
openssl req -new -key "$work/ca-key.pem" -subj "/CN=auditstream compose demo CA" -out "$work/ca.csr"
openssl x509 -req -in "$work/ca.csr" -signkey "$work/ca-key.pem" -days 825 -sha256 \
  -extfile "$work/ca.ext" -out "$work/ca.pem" 2>/dev/null

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/key.pem" 2>/dev/null
openssl req -new -key "$work/key.pem" -subj "/CN=auditstream demo receiver" -out "$work/server.csr"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" \
  -CAcreateserial -days 825 -sha256 -extfile "$work/server.ext" -out "$work/cert.pem" 2>/dev/null

openssl verify -CAfile "$work/ca.pem" "$work/cert.pem" >/dev/null

mkdir -p "$dir"
# The CA key is not kept: nothing else is ever signed with it.
cp "$work/key.pem" "$dir/key.pem"
umask 022
cp "$work/ca.pem" "$dir/ca.pem"
cp "$work/cert.pem" "$dir/cert.pem"
chmod 0644 "$dir/ca.pem" "$dir/cert.pem"
chmod 0600 "$dir/key.pem"
echo "issued the demo receiver's certificate for $san in $dir (trust $dir/ca.pem)"
