#!/usr/bin/env bash
# End-to-end test of TLS, mTLS, bearer tokens and rights on gorego's gRPC and HTTP listeners:
# a real Bazel client (Debian's bazel-bootstrap 4.2) with --remote_cache=grpcs://127.0.0.1:PORT,
# --tls_certificate (the test CA), --tls_client_certificate/--tls_client_key (a client
# certificate of that CA) and --remote_header=Authorization=Bearer TOKEN; then with
# --remote_cache=https://127.0.0.1:PORT and the same flags.
#
# usage: bazel_security_test.sh /path/to/gorego
#
# Server A (mTLS, tokens file; principals ci: read+write, reader: read, ops: admin):
#   1. ci token, cold: every genrule runs locally and is uploaded; nothing refused;
#   2. ci token, fresh output base: every genrule a remote cache hit, outputs
#      byte-identical to 1 and an action's stderr replayed;
#   3. reader token, fresh output base: the same hits (a reader is served), nothing refused;
#   4. refused clients, one warm output base: a wrong token (UNAUTHENTICATED), the
#      certificate without a token (PERMISSION_DENIED: the certificate's principal has no
#      rights here), no client certificate, and a client certificate of an unrelated CA:
#      none gets a cache hit;
#   5. the admin port: /metrics needs the admin right (401 without a token, 403 for reader).
# Server B (the same configuration, an empty store):
#   6. reader token: the build succeeds, every genrule runs locally, the uploads are refused
#      PERMISSION_DENIED (gorego_auth_refused_total) and nothing is stored (gorego_index_blobs);
#   7. reader token again, fresh output base: no hits, since nothing was accepted.
# Server C (TLS without client certificates, otherwise the same; an empty store), over
# https:// to its HTTP listener. Bazel 4.2's HTTP client ignores the --tls_* flags: it trusts
# the JVM's trust store (the test CA's, given with --host_jvm_args) and cannot present a
# client certificate, so an mTLS HTTP listener would fail its handshake:
#   8. reader token: the build succeeds, every genrule runs locally, the uploads (PUT) are
#      refused 403 (gorego_auth_refused_total{reason="permission_denied"}, a "call refused"
#      log line of the reader) and nothing is stored;
#   9. ci token, cold: every genrule runs locally and is uploaded; nothing refused;
#  10. ci token, fresh output base: every genrule a remote cache hit, outputs
#      byte-identical to 9 and an action's stderr replayed.
# Finally every server logged its TLS mode on both listeners, and no server log (JSON lines
# on stderr) contains any of the tokens.
#
# Builds with accepted credentials must not print any "Remote Cache" warning (Bazel would
# otherwise quietly build locally). Environment knobs: see bazel_lib.sh.
set -euo pipefail

E2E_NAME="bazel security e2e"
# shellcheck source-path=SCRIPTDIR source=bazel_lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bazel_lib.sh"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 /path/to/gorego" >&2
    exit 2
fi
resolve_gorego "$1"
for tool in openssl curl od; do
    command -v "$tool" >/dev/null || fail "$tool not found"
done
e2e_setup gorego-bazel-security-e2e
SECONDS=0

# --- Bazel's TLS -------------------------------------------------------------
# The netty in Debian's bazel-bootstrap has no ALPN for the JDK's TLS (Bazel exits 37 with
# "JDK provider does not support ALPN protocol" in java.log), so its gRPC does TLS only with
# netty-tcnative's OpenSSL provider: the JNI library of the package libnetty-tcnative-jni.
# Netty loads it as libnetty_tcnative.so from java.library.path, but Debian names it
# libnetty-tcnative.so and Bazel's JVM searches only the install base: copy it under netty's
# name (not a symlink: the library derives its JNI names from its resolved file name and
# refuses "unexpected library path" otherwise) and append that directory (the install base
# stays first, for Bazel's own libraries).
JVM_ARGS=() # for Bazel's JVM: --host_jvm_args, one each
TCNATIVE=${BAZEL_E2E_TCNATIVE:-}
if [[ -z $TCNATIVE ]]; then
    for f in /usr/lib/*/jni/libnetty-tcnative.so /usr/lib/jni/libnetty-tcnative.so; do
        [[ -f $f ]] && { TCNATIVE=$f; break; }
    done
fi
if [[ -n $TCNATIVE ]]; then
    [[ -f $TCNATIVE ]] || fail "BAZEL_E2E_TCNATIVE=$TCNATIVE is not a file"
    mkdir -p "$TMP/jni"
    cp "$TCNATIVE" "$TMP/jni/libnetty_tcnative.so"
    INSTALL_BASE=$(sed -n 's/^startup --install_base=//p' /etc/bazel/bazelrc /etc/bazel.bazelrc 2>/dev/null |
        tail -n 1 || true) # one of the two files is missing
    INSTALL_BASE=${INSTALL_BASE:-/usr/share/bazel}
    JVM_ARGS+=("-Djava.library.path=$INSTALL_BASE:$TMP/jni")
else
    log "no libnetty-tcnative.so found: Debian's bazel-bootstrap needs the package libnetty-tcnative-jni" \
        "for grpcs:// (or set BAZEL_E2E_TCNATIVE to the library)"
fi

# --- certificates ----------------------------------------------------------
# The test CA signs the server's certificate (127.0.0.1) and the client's ("gorego test
# client"). A second, unrelated CA signs a client certificate with the same name: only the
# CA may decide that it is refused.
CERTS=$TMP/certs
bash "$E2E_LIB_DIR/make_test_certs.sh" "$CERTS" || fail "make_test_certs.sh failed"
FOREIGN=$TMP/foreign
mkdir -p "$FOREIGN"
(
    cd "$FOREIGN"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=unrelated test CA" \
        -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=gorego test client" \
        -keyout client.key -out client.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile client.ext -out client.pem 2>/dev/null
) || fail "could not make the unrelated CA's client certificate"
# Bazel (netty) reads --tls_client_key only as unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY");
# OpenSSL 3 writes that already, older ones wrote PKCS#1: convert to be sure.
for dir in "$CERTS" "$FOREIGN"; do
    openssl pkcs8 -topk8 -nocrypt -in "$dir/client.key" -out "$dir/client.pk8.key" ||
        fail "could not convert $dir/client.key to PKCS#8"
done

# --- Bazel's HTTPS ---------------------------------------------------------
# Bazel 4.2's HTTP cache client (HttpCacheClient) builds its TLS context with
# SslContextBuilder.forClient() alone: it ignores --tls_certificate, --tls_client_certificate
# and --tls_client_key. It trusts the JVM's default trust store, and it presents no client
# certificate, so an https:// cache that requires one refuses its handshake. The test CA goes
# into a trust store of its own that Bazel's JVM then uses (the JVM's default one is replaced,
# not extended, which matters to no build here). The grpcs:// client is unaffected: it trusts
# --tls_certificate only. The HTTPS client needs no netty-tcnative: without it netty takes
# the JDK's TLS, which suffices for HTTP/1.1 (no ALPN).
KEYTOOL=$JAVABASE/bin/keytool
[[ -x $KEYTOOL ]] || KEYTOOL=$(command -v keytool) || fail "keytool not found (for Bazel's trust store)"
# The store's password guards nothing here; the JVM needs one to check the store's integrity.
"$KEYTOOL" -importcert -noprompt -alias gorego-test-ca -file "$CERTS/ca.pem" -storetype PKCS12 \
    -keystore "$CERTS/truststore.p12" -storepass gorego-test >/dev/null 2>&1 ||
    fail "keytool could not make a trust store of $CERTS/ca.pem"
JVM_ARGS+=("-Djavax.net.ssl.trustStore=$CERTS/truststore.p12" "-Djavax.net.ssl.trustStoreType=PKCS12"
           "-Djavax.net.ssl.trustStorePassword=gorego-test")
eval "lib_$(declare -f bazel_startup_opts)"
bazel_startup_opts() { # the library's options, and the JVM_ARGS
    lib_bazel_startup_opts "$1"
    local arg
    for arg in "${JVM_ARGS[@]}"; do
        printf '%s\n' "--host_jvm_args=$arg"
    done
}

# --- credentials and the server configuration ------------------------------
# Random tokens, so that finding one in a log cannot be a coincidence.
new_token() { printf '%s-%s\n' "$1" "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"; }
CI_TOKEN=$(new_token ci)
READER_TOKEN=$(new_token reader)
OPS_TOKEN=$(new_token ops)
WRONG_TOKEN=$(new_token ci)  # looks like a real one, is in no file
TOKENS=("$CI_TOKEN" "$READER_TOKEN" "$OPS_TOKEN" "$WRONG_TOKEN")
(umask 077 && printf '# principal token\nci %s\nreader %s\nops %s\n' \
    "$CI_TOKEN" "$READER_TOKEN" "$OPS_TOKEN" >"$TMP/tokens")

# `authenticated: none`: the client certificate's own principal ("gorego test client") gets no
# rights, so every call that is served was let in by its bearer token; were the header lost
# on the way, build 1 would fail instead of passing on the certificate's default read+write.
cat >"$TMP/gorego.yaml" <<EOF
tls:
  cert_file: "$CERTS/server.pem"
  key_file: "$CERTS/server.key"
  client_ca_file: "$CERTS/ca.pem"
auth:
  tokens_file: "$TMP/tokens"
  rights:
    ci: read+write
    reader: read
    ops: admin
    authenticated: none
EOF

# Server C, for Bazel over https://, asks for no client certificate: Bazel 4.2's HTTP cache
# client cannot send one (see "Bazel's HTTPS" below), and gorego's HTTP listener shares the
# gRPC port's tls.* settings, so with client_ca_file it would refuse Bazel's handshake.
grep -v 'client_ca_file:' "$TMP/gorego.yaml" >"$TMP/gorego-tls.yaml"

# Every server also has the HTTP cache listener (http.addr), which serves HTTPS with the same
# certificate, client CA and credentials as its gRPC port.
declare -A ADMIN_PORT=() GRPC_PORT=() HTTP_PORT=()
start_secure_gorego() { # $1 = name, $2 = config file; its data dir is $TMP/data-NAME
    local ports
    mapfile -t ports < <(free_ports 3)
    GRPC_PORT[$1]=${ports[0]}
    ADMIN_PORT[$1]=${ports[1]}
    HTTP_PORT[$1]=${ports[2]}
    # A scalar flag given twice keeps the last: this --metrics-addr wins over start_gorego's "".
    start_gorego "$1" "${GRPC_PORT[$1]}" "$TMP/data-$1" --config "$2" \
        --metrics-addr "127.0.0.1:${ADMIN_PORT[$1]}" --http-addr "127.0.0.1:${HTTP_PORT[$1]}"
}

# The admin port's /metrics, read as the ops principal (the admin right).
scrape() { # $1 = server name; writes $TMP/metrics-NAME.txt
    curl -fsS --max-time 10 --retry 5 --retry-connrefused --retry-delay 1 \
        -H "Authorization: Bearer $OPS_TOKEN" "http://127.0.0.1:${ADMIN_PORT[$1]}/metrics" \
        >"$TMP/metrics-$1.txt" || fail "could not read /metrics of $1 as the ops principal"
}

# The value of one series, as an integer: metric NAME whose labels contain LABEL ("" for none).
# Assign it (x=$(metric ...)) rather than use it inside [[ ]]: there a failed scrape would be
# an empty string, which [[ -eq ]] takes for 0.
metric() { # $1 = server name, $2 = metric name, $3 = label text such as reason="permission_denied"
    scrape "$1"
    awk -v name="$2" -v label="$3" '
        /^#/ { next }
        { split($1, parts, "{") }
        parts[1] == name && (label == "" || index($1, label) > 0) { printf "%d\n", $2 + 0; found = 1; exit }
        END { exit !found }' "$TMP/metrics-$1.txt" || fail "$1 exports no series $2{$3}"
}

refused() { # $1 = server name, $2 = reason (unauthenticated, permission_denied)
    metric "$1" gorego_auth_refused_total "reason=\"$2\""
}

# --- builds ----------------------------------------------------------------
TLS_FLAGS=("--tls_certificate=$CERTS/ca.pem" "--tls_client_certificate=$CERTS/client.pem"
           "--tls_client_key=$CERTS/client.pk8.key")

# Sets CACHE_FLAGS for a grpcs:// cache at gorego NAME with TOKEN ("" for no header) and
# the given TLS flags. The token stays out of the test's own output: run_build logs only
# its extra flags, not CACHE_FLAGS.
cache_flags() { # $1 = cache URL, $2 = token or "", rest = TLS flags
    CACHE_FLAGS=("--remote_cache=$1" "--disk_cache=" "${@:3}")
    [[ -z $2 ]] || CACHE_FLAGS+=("--remote_header=Authorization=Bearer $2")
}
use_cache() { # $1 = server name, $2 = token or "", rest = TLS flags
    cache_flags "grpcs://127.0.0.1:${GRPC_PORT[$1]}" "${@:2}"
}
# The same for the HTTP cache protocol over TLS, on the server's HTTP listener. Bazel 4.2's
# HTTP cache client sends the --remote_header values (not --remote_cache_header's) on every
# request; with `authenticated: none` a lost header would be a 401 for every request.
use_https_cache() { # $1 = server name, $2 = token or "", rest = TLS flags
    cache_flags "https://127.0.0.1:${HTTP_PORT[$1]}" "${@:2}"
}

# Like run_build, but neither a failed build nor a cache warning fails the test, and with a
# shorter time limit (a refused client fails within seconds). Sets BUILD_RC and BUILD_LOG
# and, for a build that finished, the process summary (P_LINE "" otherwise).
try_build() { # $1 = name, $2 = output base, rest = extra build flags
    local name=$1 ob=$2
    shift 2
    local opts
    mapfile -t opts < <(bazel_startup_opts "$ob")
    OUTPUT_BASES+=("$ob")
    BUILD_LOG=$TMP/$name.log
    BUILD_RC=0
    log "$name: bazel build //:all $*"
    (cd "$WS" && timeout 300 "$BAZEL" "${opts[@]}" build \
        "${CACHE_FLAGS[@]}" "${COMMON_BUILD_FLAGS[@]}" "$@" //:all) \
        >"$BUILD_LOG" 2>&1 || BUILD_RC=$?
    check_servers_alive "$name: "
    [[ $BUILD_RC -ne 124 ]] || fail "$name: bazel did not finish within 300 s"
    P_LINE="" P_HITS=0 P_EXECUTED=0
    if [[ $BUILD_RC -eq 0 ]]; then
        parse_processes "$BUILD_LOG"
        log "$name: $P_LINE"
    else
        log "$name: bazel exited with $BUILD_RC"
    fi
}

# The last try_build did not use the cache: either Bazel stopped with an error that names
# PATTERN (the capabilities query is its first call), or it built without a single hit.
expect_refused() { # $1 = name, $2 = extended regex the log must contain
    local name=$1 pattern=$2
    if ! grep -Eq "$pattern" "$BUILD_LOG"; then
        tail -n 40 "$BUILD_LOG" >&2
        fail "$name: expected the cache to refuse the client (/$pattern/ in the output)"
    fi
    if [[ $BUILD_RC -eq 0 ]]; then
        [[ $P_HITS -eq 0 ]] || fail "$name: a refused client got remote cache hits: $P_LINE"
    fi
    log "$name: refused: $(grep -Em1 "$pattern" "$BUILD_LOG" | cut -c1-200)"
}

# Cache warnings of the last build other than failed writes: a reader must read cleanly.
expect_only_write_warnings() { # $1 = name
    local bad
    bad=$(grep -E 'WARNING: .*[Rr]emote [Cc]ache' "$BUILD_LOG" | grep -v 'Writing to Remote Cache' || true)
    if [[ -n $bad ]]; then
        printf '%s\n' "$bad" | head -n 20 >&2
        fail "$1: Bazel reported remote cache errors other than refused uploads"
    fi
    log "$1: $(grep -c 'WARNING: Writing to Remote Cache' "$BUILD_LOG" || true) refused-upload warnings from Bazel"
}

start_secure_gorego gorego-a "$TMP/gorego.yaml"

# --- 1. ci token, cold: uploads accepted ---------------------------------------
use_cache gorego-a "$CI_TOKEN" "${TLS_FLAGS[@]}"
run_build build1 "$TMP/ob1"
expect_cold_build build1
shutdown_build_server "$TMP/ob1"
UNAUTH_A=$(refused gorego-a unauthenticated)
DENIED_A=$(refused gorego-a permission_denied)
[[ $UNAUTH_A -eq 0 && $DENIED_A -eq 0 ]] ||
    fail "build1: gorego refused $UNAUTH_A calls UNAUTHENTICATED and $DENIED_A PERMISSION_DENIED with the ci token"
STORED_A=$(metric gorego-a gorego_index_blobs "")
[[ $STORED_A -gt 0 ]] || fail "build1: gorego stored nothing (gorego_index_blobs is 0)"
log "build1: gorego-a holds $STORED_A objects"

# --- 2. ci token, fresh output base: all hits ----------------------------------
run_build build2 "$TMP/ob2"
expect_all_hits build2
expect_same_outputs build2 build1
shutdown_build_server "$TMP/ob2"

# --- 3. reader token, fresh output base: served all hits -----------------------
# run_build fails on any cache warning: with every action a hit, a reader has nothing to
# upload, so nothing of it may be refused either.
use_cache gorego-a "$READER_TOKEN" "${TLS_FLAGS[@]}"
run_build build3 "$TMP/ob3"
expect_all_hits build3
expect_same_outputs build3 build1
shutdown_build_server "$TMP/ob3"
UNAUTH_A=$(refused gorego-a unauthenticated)
DENIED_A=$(refused gorego-a permission_denied)
[[ $UNAUTH_A -eq 0 && $DENIED_A -eq 0 ]] ||
    fail "build3: gorego refused $UNAUTH_A calls UNAUTHENTICATED and $DENIED_A PERMISSION_DENIED of a reader that only reads"

# --- 4. refused clients: one warm Bazel server for all --------------------------
# Only the build flags change between these builds, so the JVM is started once.
NEG=$TMP/ob-refused
use_cache gorego-a "$WRONG_TOKEN" "${TLS_FLAGS[@]}"
try_build refused-wrong-token "$NEG"
expect_refused refused-wrong-token 'UNAUTHENTICATED'
UNAUTH_A=$(refused gorego-a unauthenticated)
[[ $UNAUTH_A -gt 0 ]] ||
    fail "refused-wrong-token: gorego_auth_refused_total{reason=\"unauthenticated\"} did not count it"

use_cache gorego-a "" "${TLS_FLAGS[@]}"
try_build refused-no-token "$NEG"
expect_refused refused-no-token 'PERMISSION_DENIED'
DENIED_A=$(refused gorego-a permission_denied)
[[ $DENIED_A -gt 0 ]] ||
    fail "refused-no-token: gorego_auth_refused_total{reason=\"permission_denied\"} did not count it"

# The handshake fails: Bazel sees the connection closed, whatever its words for it.
use_cache gorego-a "$CI_TOKEN" "--tls_certificate=$CERTS/ca.pem"
try_build refused-no-client-cert "$NEG"
expect_refused refused-no-client-cert 'UNAVAILABLE|[Cc]apabilities|[Hh]andshake|SSL|TLS|certificate'

use_cache gorego-a "$CI_TOKEN" "--tls_certificate=$CERTS/ca.pem" \
    "--tls_client_certificate=$FOREIGN/client.pem" "--tls_client_key=$FOREIGN/client.pk8.key"
try_build refused-foreign-cert "$NEG"
expect_refused refused-foreign-cert 'UNAVAILABLE|[Cc]apabilities|[Hh]andshake|SSL|TLS|certificate'
shutdown_build_server "$NEG"

# --- 5. the admin port needs the admin right ------------------------------------
admin_status() { # $1 = server name, rest = curl options; prints the HTTP status of /metrics
    curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "${@:2}" "http://127.0.0.1:${ADMIN_PORT[$1]}/metrics"
}
[[ $(admin_status gorego-a) == 401 ]] || fail "/metrics without credentials is not 401"
[[ $(admin_status gorego-a -H "Authorization: Bearer $READER_TOKEN") == 403 ]] ||
    fail "/metrics for the reader principal is not 403"
[[ $(admin_status gorego-a -H "Authorization: Bearer $WRONG_TOKEN") == 401 ]] ||
    fail "/metrics with a wrong token is not 401"
NOW_A=$(metric gorego-a gorego_index_blobs "")
[[ $NOW_A -eq $STORED_A ]] ||
    fail "gorego-a's store changed ($STORED_A -> $NOW_A objects) while only readers and refused clients used it"

stop_gorego gorego-a || fail "gorego-a needed SIGKILL"

# A reader's build (CACHE_FLAGS set) against server $2, whose store held $3 objects: the build
# succeeds with every action run locally and outputs identical to build1; the reader's
# uploads are refused PERMISSION_DENIED (none UNAUTHENTICATED), the store does not grow, and
# the server logs a refusal of the reader (whose line also matches $4 when given). Sets DENIED.
reader_build_refused() { # $1 = build name (buildN), $2 = server, $3 = objects before, $4 = log pattern or ""
    local b=$1 server=$2 empty=$3 pattern=$4 unauth stored
    try_build "$b" "$TMP/ob${b#build}"
    [[ $BUILD_RC -eq 0 ]] || { tail -n 60 "$BUILD_LOG" >&2; fail "$b: a reader's build failed (exit $BUILD_RC)"; }
    expect_only_write_warnings "$b"
    [[ $P_HITS -eq 0 && $P_EXECUTED -eq $EXPECTED_ACTIONS ]] ||
        fail "$b: expected $EXPECTED_ACTIONS locally executed actions and no hits, got: $P_LINE"
    outputs_sha256 >"$TMP/$b.sha256"
    cmp -s "$TMP/build1.sha256" "$TMP/$b.sha256" || fail "$b: outputs differ from build1"
    shutdown_build_server "$TMP/ob${b#build}"
    DENIED=$(refused "$server" permission_denied)
    [[ $DENIED -gt 0 ]] ||
        fail "$b: gorego refused none of the reader's uploads (gorego_auth_refused_total{reason=\"permission_denied\"} 0)"
    unauth=$(refused "$server" unauthenticated)
    [[ $unauth -eq 0 ]] || fail "$b: gorego refused $unauth calls of the reader UNAUTHENTICATED"
    stored=$(metric "$server" gorego_index_blobs "")
    [[ $stored -eq $empty ]] || fail "$b: gorego stored uploads of a reader (gorego_index_blobs $empty -> $stored)"
    # (The last grep reads all its input, not -q: with pipefail, an early exit could fail the first.)
    grep '"msg":"call refused"' "$TMP/$server.log" | grep -F -- "$pattern" | grep '"principal":"reader"' |
        grep '"code":"PERMISSION_DENIED"' >/dev/null ||
        fail "$b: $server logged no call of the reader refused PERMISSION_DENIED"
    log "$b: $DENIED uploads refused PERMISSION_DENIED, $server still holds $stored objects"
}

# --- 6. reader token on an empty server: builds, uploads refused ------------------
start_secure_gorego gorego-b "$TMP/gorego.yaml"
EMPTY_B=$(metric gorego-b gorego_index_blobs "")
use_cache gorego-b "$READER_TOKEN" "${TLS_FLAGS[@]}"
reader_build_refused build6 gorego-b "$EMPTY_B" ""

# --- 7. reader token again: nothing to hit ---------------------------------------
try_build build7 "$TMP/ob7"
[[ $BUILD_RC -eq 0 ]] || { tail -n 60 "$BUILD_LOG" >&2; fail "build7: a reader's build failed (exit $BUILD_RC)"; }
expect_only_write_warnings build7
[[ $P_HITS -eq 0 && $P_EXECUTED -eq $EXPECTED_ACTIONS ]] ||
    fail "build7: a reader's refused uploads were served: expected no hits, got: $P_LINE"
shutdown_build_server "$TMP/ob7"

stop_gorego gorego-b || fail "gorego-b needed SIGKILL"

# --- Server C: the HTTP cache protocol over TLS ------------------------------------
# The reader comes first, while the store is empty; then ci fills it. The --tls_* flags are
# given as for grpcs:// though Bazel 4.2 ignores them for https:// (the trust store above
# does --tls_certificate's work; a later Bazel would use them instead).
start_secure_gorego gorego-c "$TMP/gorego-tls.yaml"
EMPTY_C=$(metric gorego-c gorego_index_blobs "")

# --- 8. reader token over https://: builds, uploads refused 403 ---
use_https_cache gorego-c "$READER_TOKEN" "${TLS_FLAGS[@]}"
reader_build_refused build8 gorego-c "$EMPTY_C" '"call":"HTTP PUT'
DENIED_C=$DENIED

# --- 9. ci token over https://, cold: uploads accepted ---
use_https_cache gorego-c "$CI_TOKEN" "${TLS_FLAGS[@]}"
run_build build9 "$TMP/ob9"
expect_cold_build build9
cmp -s "$TMP/build1.sha256" "$TMP/build9.sha256" || fail "build9: outputs differ from build1"
shutdown_build_server "$TMP/ob9"
NOW_DENIED_C=$(refused gorego-c permission_denied)
UNAUTH_C=$(refused gorego-c unauthenticated)
[[ $NOW_DENIED_C -eq $DENIED_C && $UNAUTH_C -eq 0 ]] ||
    fail "build9: gorego refused $((NOW_DENIED_C - DENIED_C)) HTTP requests 403 and $UNAUTH_C 401 with the ci token"
STORED_C=$(metric gorego-c gorego_index_blobs "")
[[ $STORED_C -gt $EMPTY_C ]] || fail "build9: gorego stored nothing uploaded over https://"
log "build9: gorego-c holds $STORED_C objects"

# --- 10. ci token over https://, fresh output base: all hits ---
run_build build10 "$TMP/ob10"
expect_all_hits build10
expect_same_outputs build10 build9
shutdown_build_server "$TMP/ob10"

stop_gorego gorego-c || fail "gorego-c needed SIGKILL"

# --- the server logs: what they said, and no secret -----------------------------------
declare -A WANT_TLS=([gorego-a]=mtls [gorego-b]=mtls [gorego-c]=on)
for name in gorego-a gorego-b gorego-c; do
    grep '"msg":"listener security"' "$TMP/$name.log" | grep "\"tls\":\"${WANT_TLS[$name]}\"" |
        grep '"auth":"on"' >/dev/null ||
        fail "$name did not log that its listener does TLS (${WANT_TLS[$name]}) with authentication"
    grep '"msg":"HTTP cache listening"' "$TMP/$name.log" | grep "\"tls\":\"${WANT_TLS[$name]}\"" >/dev/null ||
        fail "$name did not log that its HTTP listener does TLS (${WANT_TLS[$name]})"
    grep -q '"msg":"call refused"' "$TMP/$name.log" || fail "$name logged no refused call"
    for token in "${TOKENS[@]}"; do
        if grep -qF -- "$token" "$TMP/$name.log"; then
            fail "$name's log contains the token of principal ${token%%-*}"
        fi
    done
done

echo "bazel security e2e: $EXPECTED_ACTIONS actions over grpcs:// with mTLS and bearer tokens: all hits for" \
    "ci and reader, a reader's uploads refused, 4 refused clients; over https:// with bearer tokens:" \
    "all hits for ci, a reader's uploads refused; no token in the logs (${SECONDS} s)"
