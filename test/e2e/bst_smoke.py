#!/usr/bin/python3
# Manual check of bst_cas_server.py (BuildStream 1.6 CAS server) from a plain
# gRPC client using the stubs BuildStream ships.  Starts the server itself on a
# free port in a temp repo, prints one line per call: "OK"/"FAIL <code>", then
# compares each result with what bst_cas_server.py documents.
#
#   /usr/bin/python3 test/e2e/bst_smoke.py
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid

import grpc

from buildstream._protos.build.bazel.remote.execution.v2 import (
    remote_execution_pb2 as re, remote_execution_pb2_grpc as re_grpc)
from buildstream._protos.google.bytestream import (
    bytestream_pb2 as bs, bytestream_pb2_grpc as bs_grpc)

HERE = os.path.dirname(os.path.abspath(__file__))
results = []  # (name, expected, got)


def digest(data):
    return re.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def call(name, expected, fn):
    try:
        got, detail = 'OK', fn()
    except grpc.RpcError as e:
        got, detail = e.code().name, e.details()
    results.append((name, expected, got))
    flag = '' if got == expected else '   <-- expected ' + expected
    print('{:58} {:20} {}{}'.format(name, got, detail if detail else '', flag))


def write(stub, resource, data, chunk=1 << 20, finish=True):
    def reqs():
        off = 0
        while True:
            piece = data[off:off + chunk]
            last = off + len(piece) >= len(data)
            yield bs.WriteRequest(resource_name=resource if off == 0 else '',
                                  write_offset=off, data=piece,
                                  finish_write=finish and last)
            off += len(piece)
            if last:
                return
    r = stub.Write(reqs())
    return 'committed_size={}'.format(r.committed_size)


def read(stub, resource, want=None, **kw):
    got = b''.join(r.data for r in stub.Read(bs.ReadRequest(resource_name=resource, **kw)))
    if want is not None and got != want:
        return 'WRONG BYTES ({} bytes, sha256 {})'.format(len(got), hashlib.sha256(got).hexdigest()[:12])
    return '{} bytes, match'.format(len(got)) if want is not None else '{} bytes'.format(len(got))


def main():
    repo = tempfile.mkdtemp(prefix='bstcas-')
    proc = subprocess.Popen(['/usr/bin/python3', os.path.join(HERE, 'bst_cas_server.py'),
                             '--repo', repo, '--port', '0'],
                            stdout=subprocess.PIPE, universal_newlines=True)
    line = proc.stdout.readline().strip()
    print('server:', line)
    addr = line.rsplit(' ', 1)[-1]
    ch = grpc.insecure_channel(addr, options=[('grpc.max_receive_message_length', 64 << 20),
                                              ('grpc.max_send_message_length', 64 << 20)])
    cap = re_grpc.CapabilitiesStub(ch)
    cas = re_grpc.ContentAddressableStorageStub(ch)
    ac = re_grpc.ActionCacheStub(ch)
    bst = bs_grpc.ByteStreamStub(ch)

    small = b'hello gorego\n'
    sd = digest(small)
    big = os.urandom(5 << 20)
    bd = digest(big)

    def caps(inst):
        c = cap.GetCapabilities(re.GetCapabilitiesRequest(instance_name=inst)).cache_capabilities
        return 'digest_fns={} max_batch={} ac_update={}'.format(
            list(c.digest_function), c.max_batch_total_size_bytes,
            c.action_cache_update_capabilities.update_enabled)

    for inst in ('', 'main'):
        tag = '[inst={!r}]'.format(inst)
        call('GetCapabilities ' + tag, 'OK', lambda: caps(inst))
        call('FindMissingBlobs before upload ' + tag, 'OK', lambda: 'missing={}'.format(len(
            cas.FindMissingBlobs(re.FindMissingBlobsRequest(instance_name=inst, blob_digests=[sd]))
            .missing_blob_digests)))
        call('BatchUpdateBlobs small ' + tag, 'OK', lambda: str([
            r.status.code for r in cas.BatchUpdateBlobs(re.BatchUpdateBlobsRequest(
                instance_name=inst, requests=[re.BatchUpdateBlobsRequest.Request(
                    digest=sd, data=small)])).responses]))
        call('FindMissingBlobs after upload ' + tag, 'OK', lambda: 'missing={}'.format(len(
            cas.FindMissingBlobs(re.FindMissingBlobsRequest(instance_name=inst, blob_digests=[sd]))
            .missing_blob_digests)))

        def batch_read():
            r = cas.BatchReadBlobs(re.BatchReadBlobsRequest(instance_name=inst, digests=[sd])).responses[0]
            return 'status={} match={}'.format(r.status.code, r.data == small)
        call('BatchReadBlobs small ' + tag, 'OK', batch_read)

        pfx = inst + '/' if inst else ''
        exp = 'OK' if not inst else 'NOT_FOUND'
        call('ByteStream.Write 5 MiB ' + tag, exp, lambda: write(
            bst, '{}uploads/{}/blobs/{}/{}'.format(pfx, uuid.uuid4(), bd.hash, bd.size_bytes), big))
        call('ByteStream.Read 5 MiB ' + tag, exp, lambda: read(
            bst, '{}blobs/{}/{}'.format(pfx, bd.hash, bd.size_bytes), big))

    # --- quirks ---
    wrong = b'not the bytes you promised'
    call('BatchUpdateBlobs wrong hash', 'UNKNOWN', lambda: str([
        r.status.code for r in cas.BatchUpdateBlobs(re.BatchUpdateBlobsRequest(requests=[
            re.BatchUpdateBlobsRequest.Request(digest=re.Digest(hash='0' * 64, size_bytes=len(wrong)),
                                               data=wrong)])).responses]))
    call('BatchUpdateBlobs size != len(data)', 'UNKNOWN', lambda: str([
        r.status.code for r in cas.BatchUpdateBlobs(re.BatchUpdateBlobsRequest(requests=[
            re.BatchUpdateBlobsRequest.Request(digest=re.Digest(hash=sd.hash, size_bytes=99),
                                               data=small)])).responses]))
    call('BatchReadBlobs 5 MiB (> 1 MiB batch)', 'INVALID_ARGUMENT',
         lambda: str(len(cas.BatchReadBlobs(re.BatchReadBlobsRequest(digests=[bd])).responses)))
    missing = digest(b'never uploaded')
    call('BatchReadBlobs missing blob', 'OK', lambda: 'status={}'.format(
        cas.BatchReadBlobs(re.BatchReadBlobsRequest(digests=[missing])).responses[0].status.code))
    call('ByteStream.Read missing blob', 'NOT_FOUND',
         lambda: read(bst, 'blobs/{}/{}'.format(missing.hash, missing.size_bytes)))
    call('ByteStream.Write wrong hash', 'FAILED_PRECONDITION', lambda: write(
        bst, 'uploads/{}/blobs/{}/{}'.format(uuid.uuid4(), '0' * 64, len(wrong)), wrong))
    call('FindMissingBlobs after wrong-hash uploads (real digest)', 'OK', lambda: 'missing={}'.format(len(
        cas.FindMissingBlobs(re.FindMissingBlobsRequest(blob_digests=[digest(wrong)])).missing_blob_digests)))
    call('ByteStream.Write uuid1 (not v4)', 'NOT_FOUND', lambda: write(
        bst, 'uploads/{}/blobs/{}/{}'.format(uuid.uuid1(), sd.hash, sd.size_bytes), small))
    call('ByteStream.Write without finish_write', 'UNKNOWN', lambda: write(
        bst, 'uploads/{}/blobs/{}/{}'.format(uuid.uuid4(), sd.hash, sd.size_bytes), small, finish=False))
    call('ByteStream.Write 4 MiB single chunk', 'OK', lambda: write(
        bst, 'uploads/{}/blobs/{}/{}'.format(uuid.uuid4(), bd.hash, bd.size_bytes), big, chunk=4 << 20))
    call('ByteStream.Read read_limit=10 (ignored?)', 'OK',
         lambda: read(bst, 'blobs/{}/{}'.format(bd.hash, bd.size_bytes), read_limit=10))
    call('ByteStream.Read read_offset=5 MiB-3', 'OK',
         lambda: read(bst, 'blobs/{}/{}'.format(bd.hash, bd.size_bytes), read_offset=bd.size_bytes - 3))
    empty = digest(b'')
    call('ByteStream.Read empty blob (never uploaded)', 'NOT_FOUND',
         lambda: read(bst, 'blobs/{}/0'.format(empty.hash)))
    call('FindMissingBlobs wrong size_bytes', 'OK', lambda: 'missing={}'.format(len(
        cas.FindMissingBlobs(re.FindMissingBlobsRequest(blob_digests=[
            re.Digest(hash=sd.hash, size_bytes=12345)])).missing_blob_digests)))
    call('ByteStream.QueryWriteStatus', 'UNIMPLEMENTED',
         lambda: str(bst.QueryWriteStatus(bs.QueryWriteStatusRequest(resource_name='x'))))
    call('CAS.GetTree', 'UNIMPLEMENTED',
         lambda: str(list(cas.GetTree(re.GetTreeRequest(root_digest=sd)))))
    call('ActionCache.GetActionResult', 'UNIMPLEMENTED',
         lambda: str(ac.GetActionResult(re.GetActionResultRequest(action_digest=sd))))
    call('ActionCache.UpdateActionResult', 'UNIMPLEMENTED',
         lambda: str(ac.UpdateActionResult(re.UpdateActionResultRequest(action_digest=sd))))

    # --- on-disk corruption: is anything re-verified on read? ---
    path = os.path.join(repo, 'cas', 'objects', sd.hash[:2], sd.hash[2:])
    print('stored at', path, 'exists=', os.path.exists(path))
    os.chmod(path, 0o644)
    with open(path, 'wb') as f:
        f.write(b'X' * len(small))  # same length, wrong bytes
    call('ByteStream.Read corrupted (same size)', 'OK',
         lambda: read(bst, 'blobs/{}/{}'.format(sd.hash, sd.size_bytes), small))

    def batch_read_corrupt():
        r = cas.BatchReadBlobs(re.BatchReadBlobsRequest(digests=[sd])).responses[0]
        return 'status={} data={!r}'.format(r.status.code, r.data)
    call('BatchReadBlobs corrupted (same size)', 'OK', batch_read_corrupt)
    with open(path, 'wb') as f:
        f.write(b'short')
    call('ByteStream.Read corrupted (other size)', 'NOT_FOUND',
         lambda: read(bst, 'blobs/{}/{}'.format(sd.hash, sd.size_bytes), small))
    call('BatchReadBlobs corrupted (other size)', 'OK', lambda: 'status={}'.format(
        cas.BatchReadBlobs(re.BatchReadBlobsRequest(digests=[sd])).responses[0].status.code))

    ch.close()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=10)
    print('server exit code after SIGTERM:', rc)
    shutil.rmtree(repo, ignore_errors=True)
    bad = [r for r in results if r[1] != r[2]]
    print('{} calls, {} differ from expectation'.format(len(results), len(bad)))
    return 1 if bad or rc != 0 else 0


if __name__ == '__main__':
    sys.exit(main())
