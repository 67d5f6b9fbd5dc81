#!/usr/bin/python3
# Test-only launcher for BuildStream 1.6's CAS artifact server (Debian package
# `buildstream`, module buildstream._artifactcache.casserver), used as a
# third-party REAPI v2 upstream for gorego end-to-end tests.
#
#   /usr/bin/python3 bst_cas_server.py --repo DIR --port PORT
#
# Must run under /usr/bin/python3 (the Debian package lives in its
# dist-packages).  Port 0 picks a free port.  Binds 127.0.0.1 only, push is
# enabled, and "listening on 127.0.0.1:<port>" is printed once serving.
# SIGTERM/SIGINT stop it cleanly (exit code 0).
#
# What the upstream server implements (checked against casserver.py 1.6.8):
#  * Capabilities.GetCapabilities: SHA256 only, max_batch_total_size_bytes =
#    1 MiB, action_cache_update_capabilities.update_enabled = false, API
#    versions 2.0..2.0, no execution_capabilities.
#  * CAS FindMissingBlobs, BatchReadBlobs, BatchUpdateBlobs.  GetTree is not
#    overridden -> UNIMPLEMENTED ("Method not implemented!").
#  * ByteStream Read and Write.  QueryWriteStatus -> UNIMPLEMENTED.
#  * No ActionCache and no Execution service at all: every call to them gets
#    UNIMPLEMENTED from grpc ("Method not found!").
#  * BuildStream's own ReferenceStorage service (irrelevant to REAPI).
#
# Quirks a client/proxy in front of it has to live with:
#  * instance_name is ignored in every CAS/Capabilities request.  ByteStream
#    resource names must NOT carry an instance prefix: Read accepts exactly
#    "blobs/<hash>/<size>" (or bare "<hash>/<size>"), Write needs
#    "uploads/<uuid>/blobs/<hash>/<size>[/...]" with a *version-4* UUID.
#    Anything else -> NOT_FOUND.
#  * Uploads are hashed: a hash mismatch is FAILED_PRECONDITION (ByteStream),
#    but the bytes are still stored under their real hash.  In
#    BatchUpdateBlobs the per-blob error path assigns a grpc enum to an int
#    field, so a bad hash or a data/size mismatch fails the *whole* RPC with
#    UNKNOWN instead of a per-blob status.
#  * Batches whose digest sizes sum over 1 MiB -> INVALID_ARGUMENT for the
#    whole RPC.  ByteStream Read sends 1 MiB chunks and ignores read_limit.
#  * Reads are not re-verified: Read/BatchReadBlobs only check that the file
#    size matches the digest size (else NOT_FOUND).  Objects live at
#    <repo>/cas/objects/<hash[:2]>/<hash[2:]>, so a test can overwrite one
#    with same-length garbage to get an upstream that serves wrong bytes.
#  * FindMissingBlobs only checks that the file exists (size not compared).
#  * A Write stream that ends without finish_write (or is empty) -> UNKNOWN.
#    An already-present blob is not short-circuited; the full upload is read.
#  * The stock server evicts LRU objects when the disk has < 2 GB free; we pass
#    zero head room so eviction only happens when the disk is really full.
import argparse
import signal
import sys
import threading

import grpc

from buildstream._artifactcache import casserver

_OPTIONS = [
    ('grpc.so_reuseport', 0),
    ('grpc.max_receive_message_length', 64 * 1024 * 1024),
    ('grpc.max_send_message_length', 64 * 1024 * 1024),
]


class RequireHeader(grpc.ServerInterceptor):
    """Lets a call through only when it carries the metadata name: value."""

    def __init__(self, name, value):
        self._name = name.strip().lower()
        self._value = value.strip()

    def intercept_service(self, continuation, details):
        if (self._name, self._value) in tuple(details.invocation_metadata or ()):
            return continuation(details)

        def refuse(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, 'missing ' + self._name)

        handler = continuation(details)
        if handler is None:
            return None
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(refuse)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(refuse)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(refuse)
        return grpc.unary_unary_rpc_method_handler(refuse)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--repo', required=True)
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--tls-cert', help='serve TLS with this PEM certificate chain')
    ap.add_argument('--tls-key', help='PEM private key of --tls-cert')
    ap.add_argument('--tls-client-ca', help='require client certificates signed by this CA')
    ap.add_argument('--require-header', metavar='NAME:VALUE',
                    help='refuse calls without this metadata (UNAUTHENTICATED)')
    args = ap.parse_args()
    interceptors = [RequireHeader(*args.require_header.split(':', 1))] if args.require_header else []

    # create_server() calls grpc.server(executor) with no options; add ours.
    real_server = grpc.server

    def server_with_options(*a, **kw):
        kw['options'] = list(kw.get('options') or ()) + _OPTIONS
        kw['interceptors'] = list(kw.get('interceptors') or ()) + interceptors
        return real_server(*a, **kw)

    grpc.server = server_with_options
    try:
        server = casserver.create_server(args.repo, enable_push=True,
                                         max_head_size=0, min_head_size=0)
    finally:
        grpc.server = real_server

    address = '127.0.0.1:{}'.format(args.port)
    try:  # grpc >= 1.49 raises on bind failure, older versions return 0
        if args.tls_cert:
            def read(path):
                with open(path, 'rb') as f:
                    return f.read()
            creds = grpc.ssl_server_credentials(
                [(read(args.tls_key), read(args.tls_cert))],
                root_certificates=read(args.tls_client_ca) if args.tls_client_ca else None,
                require_client_auth=bool(args.tls_client_ca))
            port = server.add_secure_port(address, creds)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        print('cannot bind 127.0.0.1:{}'.format(args.port), file=sys.stderr)
        return 1

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    server.start()
    print('listening on 127.0.0.1:{}'.format(port), flush=True)
    while not stop.wait(1):
        pass
    server.stop(grace=1).wait()
    return 0


if __name__ == '__main__':
    sys.exit(main())
