#!/usr/bin/python3
"""kill -9 chaos run against a real gorego process (issue 17, item 3).

Starts gorego on a fresh data directory with the default durability (fsync on), runs a mixed
REAPI load from several threads, and at a random moment of every cycle sends it SIGKILL. It
restarts the server on the same data directory and checks that nothing it acknowledged was
lost and that no byte it reads back is wrong:

  * every acknowledged blob (BatchUpdateBlobs per-blob status OK, or a ByteStream Write whose
    committed_size is the blob's size) is reported present by FindMissingBlobs and reads back
    byte for byte (ByteStream Read for blobs of 256 KiB and more, BatchReadBlobs below);
  * every acknowledged ActionResult (UpdateActionResult OK) is answered by GetActionResult and
    equals, field for field, the message that was sent (gorego stores it unchanged);
  * blobs and results that were sent but not acknowledged may be absent; when present they
    must read back right;
  * reads during the load (of acknowledged items only) are checked the same way, every time.

Blob contents are a function of (seed, blob id, size): every blob of 8 bytes or more is
unique, so a byte served from the wrong blob or the wrong offset is detected. After each
restart every blob acknowledged since the previous check is read back, plus a random sample
of older ones (--recheck-bytes); after the last restart every acknowledged blob is read back.
Then the server is stopped with SIGTERM (it must exit 0) and started once more on the clean
shutdown's index snapshot, where every acknowledged item must still be present.

Exit status 0 only when no wrong byte was seen, no acknowledged item was lost, every restart
served, no call failed without a kill to explain it, and the load made progress in every
cycle. 1 otherwise (with a precise message and the tail of the server log), 2 for bad usage,
128+N when interrupted by signal N. The server is always killed (by PID) on the way out.

--self-check-corrupt proves the checker: it flips one byte in the file of an acknowledged
large blob while the server is down, and one in another while the server runs (after it has
been read back), and passes only when both blobs, and nothing else, are reported.

  /usr/bin/python3 test/chaos/chaos.py --binary build/gorego --cycles 4
"""

import argparse
import collections
import concurrent.futures
import hashlib
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

# gRPC's fork handlers are not needed: the tool forks only to exec the server.
os.environ.setdefault('GRPC_ENABLE_FORK_SUPPORT', 'false')

import grpc  # noqa: E402

from buildstream._protos.build.bazel.remote.execution.v2 import (  # noqa: E402
    remote_execution_pb2 as re, remote_execution_pb2_grpc as re_grpc)
from buildstream._protos.google.bytestream import (  # noqa: E402
    bytestream_pb2 as bs, bytestream_pb2_grpc as bs_grpc)

KIB = 1024
MIB = 1024 * KIB
CHUNK = 64 * KIB            # ByteStream Write message size
STREAM_MIN = 256 * KIB      # blobs this large go through ByteStream, both ways
BATCH_BYTES = 2 * MIB       # blob bytes per batch request (gorego's default limit is 4 MiB)
RPC_TIMEOUT = 60.0          # no call to a live server should come near this
START_TIMEOUT = 60.0        # process start to Capabilities answered
DRAIN_TIMEOUT = 120.0       # kill to every worker parked
LOG_TAIL_LINES = 80
SLOW_RESTART = 2.0          # a restart slower than this is reported with its phases and log
DETAIL_LINES = 20           # failures listed per kind in the summary

OP_WEIGHTS = {
    'batch-update': 30,
    'bytestream-write': 12,
    'batch-read': 18,
    'bytestream-read': 10,
    'update-action-result': 12,
    'get-action-result': 10,
    'find-missing': 8,
}
WRITE_OPS = ('batch-update', 'bytestream-write', 'update-action-result')


def parse_size(text):
    units = {'': 1, 'b': 1, 'k': KIB, 'kib': KIB, 'm': MIB, 'mib': MIB, 'g': 1024 * MIB, 'gib': 1024 * MIB}
    t = text.strip().lower()
    num = t.rstrip('abcdefghijklmnopqrstuvwxyz')
    unit = t[len(num):]
    if not num or unit not in units:
        raise argparse.ArgumentTypeError(f'size "{text}" is not a number with an optional KiB/MiB/GiB unit')
    return int(float(num) * units[unit])


def human(n):
    for unit, div in (('GiB', 1024 * MIB), ('MiB', MIB), ('KiB', KIB)):
        if n >= div:
            return f'{n / div:.1f} {unit}'
    return f'{n} B'


# --- blobs -----------------------------------------------------------------------------------

class Blob:
    """A blob of the run: its bytes are blob_bytes(seed, id, size)."""
    __slots__ = ('id', 'size', 'hash')

    def __init__(self, blob_id, size, digest_hash):
        self.id, self.size, self.hash = blob_id, size, digest_hash

    @property
    def key(self):
        return f'{self.hash}/{self.size}'

    def digest(self):
        return re.Digest(hash=self.hash, size_bytes=self.size)


def blob_bytes(seed, blob_id, size):
    # The id comes first, so even an 8-byte blob is unique; the rest is a stream seeded by
    # (seed, id).
    head = struct.pack('<QI4s', blob_id, seed & 0xffffffff, b'chs!')
    if size <= len(head):
        return head[:size]
    return head + random.Random((seed << 64) | blob_id).randbytes(size - len(head))


def first_difference(got, expected):
    n = min(len(got), len(expected))
    step = 4096
    for off in range(0, n, step):
        if got[off:off + step] != expected[off:off + step]:
            for i in range(off, min(off + step, n)):
                if got[i] != expected[i]:
                    return i
    return n


def describe_difference(got, expected):
    """One line naming where `got` first differs from `expected` (a prefix of it may be all
    that arrived)."""
    i = first_difference(got, expected)
    if i < len(got) and i < len(expected):
        return f'byte {i} is 0x{got[i]:02x}, expected 0x{expected[i]:02x} ({len(got)} bytes received)'
    if len(got) > len(expected):
        return f'{len(got)} bytes received, {len(got) - len(expected)} more than the blob\'s {len(expected)}'
    return f'{len(got)} bytes received of {len(expected)}'


def never_written_digest(seed, n):
    """A digest no blob of the run has: FindMissingBlobs must report it missing."""
    data = b'chaos: never written %d %d' % (seed, n)
    return re.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def action_digest(seed, n):
    data = b'chaos: action %d %d' % (seed, n)
    return re.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def dkey(d):
    return f'{d.hash}/{d.size_bytes}'


# --- what was sent, what was acknowledged, what went wrong -----------------------------------

class Action:
    __slots__ = ('id', 'digest', 'bytes', 'refs')

    def __init__(self, action_id, digest, serialized, refs):
        self.id, self.digest, self.bytes, self.refs = action_id, digest, serialized, refs

    @property
    def key(self):
        return dkey(self.digest)


class Ledger:
    """Every blob and ActionResult sent, and which were acknowledged. Thread-safe."""

    def __init__(self, seed):
        self.seed = seed
        self.lock = threading.Lock()
        self.next_id = 0
        self.cycle = 0
        self.blobs = {}           # key -> Blob, every blob attempted
        self.acked = {}           # key -> Blob
        self.acked_small = []     # keys, for random choice
        self.acked_large = []
        self.fresh = set()        # acknowledged since the last check after a restart
        self.unacked = {}         # attempted since the last check, not acknowledged
        self.actions = {}         # key -> Action, acknowledged
        self.action_list = []
        self.fresh_actions = set()
        self.unacked_actions = {}
        self.referenced = set()   # blob keys some ActionResult names
        self.tainted = set()      # corrupted by the self-check: not referenced from now on
        self.acks_per_cycle = collections.Counter()
        self.footprint = 0        # disk bytes the attempted blobs may take, in 4 KiB blocks

    def new_blob(self, size):
        with self.lock:
            blob_id = self.next_id
            self.next_id += 1
        data = blob_bytes(self.seed, blob_id, size)
        blob = Blob(blob_id, size, hashlib.sha256(data).hexdigest())
        with self.lock:
            if blob.key not in self.blobs:
                self.blobs[blob.key] = blob
                self.footprint += max(1, (size + 4095) // 4096) * 4096
            if blob.key not in self.acked:
                self.unacked[blob.key] = blob
        return blob, data

    def new_action_id(self):
        with self.lock:
            n = self.next_id
            self.next_id += 1
            return n

    def ack_blob(self, blob):
        with self.lock:
            self.unacked.pop(blob.key, None)
            if blob.key in self.acked:
                return
            self.acked[blob.key] = blob
            (self.acked_large if blob.size >= STREAM_MIN else self.acked_small).append(blob.key)
            self.fresh.add(blob.key)
            self.acks_per_cycle[self.cycle] += 1

    def attempt_action(self, action):
        with self.lock:
            self.unacked_actions[action.key] = action
            self.referenced.update(action.refs)

    def ack_action(self, action):
        with self.lock:
            self.unacked_actions.pop(action.key, None)
            self.actions[action.key] = action
            self.action_list.append(action.key)
            self.fresh_actions.add(action.key)
            self.acks_per_cycle[self.cycle] += 1

    def pick_acked(self, rng, large, n=1):
        with self.lock:
            pool = self.acked_large if large else self.acked_small
            if not pool:
                return []
            return [self.acked[pool[rng.randrange(len(pool))]] for _ in range(n)]

    def pick_refs(self, rng, n):
        with self.lock:
            keys = self.acked_small + self.acked_large
            if not keys:
                return []
            picks = {keys[rng.randrange(len(keys))] for _ in range(n)}
            return [self.acked[k] for k in picks if k not in self.tainted]

    def pick_action(self, rng):
        with self.lock:
            if not self.action_list:
                return None
            return self.actions[self.action_list[rng.randrange(len(self.action_list))]]


class Report:
    """Failures and counts. Thread-safe. A wrong byte is never excused by a kill."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops = collections.Counter()       # (op, outcome)
        self.counts = collections.Counter()
        self.wrong = collections.OrderedDict()     # key -> [details]
        self.lost = collections.OrderedDict()      # key -> [details]
        self.other = []                            # (key or None, detail)
        self.quiet = False                         # set when the run is interrupted

    def op(self, name, outcome):
        with self.lock:
            self.ops[(name, outcome)] += 1

    def count(self, name, n=1):
        with self.lock:
            self.counts[name] += n

    def wrong_bytes(self, key, detail):
        with self.lock:
            n = len(self.wrong.setdefault(key, []))
            self.wrong[key].append(detail)
        if n < 3 and not self.quiet:  # the first few sightings of each item as they happen
            print(f'chaos: WRONG BYTES: {key}: {detail}', file=sys.stderr, flush=True)

    def lost_item(self, key, detail):
        with self.lock:
            n = len(self.lost.setdefault(key, []))
            self.lost[key].append(detail)
        if n < 3 and not self.quiet:
            print(f'chaos: LOST: {key}: {detail}', file=sys.stderr, flush=True)

    def failure(self, key, detail):
        with self.lock:
            self.other.append((key, detail))
        if not self.quiet:
            print(f'chaos: FAILURE: {key or "-"}: {detail}', file=sys.stderr, flush=True)

    def keys_reported(self):
        keys = set(self.wrong) | set(self.lost)
        keys.update(k for k, _ in self.other)
        return keys


def remove_tree(root):
    """rm -rf, with the subdirectories two levels down (the CAS shards) removed by 16 threads
    at once: on this machine's ext4 (mounted with discard) a serial removal of 7000 blobs took
    40 s and a parallel one about 1 s."""
    subdirs = []
    for dirpath, dirnames, _ in os.walk(root):
        if os.path.relpath(dirpath, root).count(os.sep) >= 1:  # root/a/b: hand b's subtrees out
            subdirs += [os.path.join(dirpath, d) for d in dirnames]
            dirnames.clear()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda d: shutil.rmtree(d, ignore_errors=True), subdirs))
    shutil.rmtree(root, ignore_errors=True)


# --- the server process ----------------------------------------------------------------------

def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def listening_sockets(port):
    """Inodes of the TCP sockets listening on `port` (any address), from /proc/net."""
    inodes = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == '0A' and int(cols[1].rsplit(':', 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def sockets_of(pid):
    inodes = set()
    try:
        for fd in os.listdir(f'/proc/{pid}/fd'):
            try:
                target = os.readlink(f'/proc/{pid}/fd/{fd}')
            except OSError:
                continue
            if target.startswith('socket:['):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


class Conn:
    """One channel to one server process. `killed` is set just before that process is sent
    SIGKILL: a call that fails after it is excused."""

    def __init__(self, port):
        self.target = f'127.0.0.1:{port}'
        self.channel = grpc.insecure_channel(self.target, options=[
            ('grpc.max_receive_message_length', 16 * MIB),
            ('grpc.max_send_message_length', 16 * MIB),
            ('grpc.enable_retries', 0),
            ('grpc.initial_reconnect_backoff_ms', 50),
            ('grpc.max_reconnect_backoff_ms', 200),
        ])
        self.cas = re_grpc.ContentAddressableStorageStub(self.channel)
        self.ac = re_grpc.ActionCacheStub(self.channel)
        self.caps = re_grpc.CapabilitiesStub(self.channel)
        self.bs = bs_grpc.ByteStreamStub(self.channel)
        self.killed = False

    def close(self):
        self.channel.close()


class Server:
    def __init__(self, binary, root, max_size):
        self.binary = binary
        self.data_dir = os.path.join(root, 'data')
        self.log_path = os.path.join(root, 'gorego.log')
        self.max_size = max_size
        self.proc = None
        self.port = None
        self.starts = 0
        self.port_open_seconds = 0.0  # of the last start: exec to the port accepting
        self.port_clashes = 0
        # The server dies with this process even if it is SIGKILLed (the parent-death signal
        # survives exec); the finally/atexit handlers cover the other exits.
        self.wrapper = ['setpriv', '--pdeathsig', 'KILL', '--'] if shutil.which('setpriv') else []

    def start(self):
        """Starts the server and waits until it answers; returns (Conn, seconds). Raises
        RuntimeError naming the problem."""
        last = None
        for _ in range(3):  # a port taken between free_ports() and the bind: try others
            port, metrics_port = free_ports(2)
            self.starts += 1
            cmd = self.wrapper + [self.binary, '--listen', f'127.0.0.1:{port}', '--data-dir', self.data_dir,
                                  '--metrics-addr', f'127.0.0.1:{metrics_port}', '--max-size', str(self.max_size)]
            with open(self.log_path, 'ab') as log:
                log.write(f'--- chaos: start {self.starts}: {" ".join(cmd)}\n'.encode())
                log.flush()
                env = {k: v for k, v in os.environ.items() if not k.startswith('GOREGO_')}
                t0 = time.monotonic()
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env=env)
            self.port = port
            # The channel is made once the port accepts connections: one made before found
            # the port closed and, in gRPC 1.51, took 5 s more to connect after it opened.
            while time.monotonic() - t0 < START_TIMEOUT and self.proc.poll() is None:
                try:
                    socket.create_connection(('127.0.0.1', port), timeout=1.0).close()
                    break
                except OSError:
                    time.sleep(0.01)
            self.port_open_seconds = time.monotonic() - t0
            conn = Conn(port)
            clash = False
            while time.monotonic() - t0 < START_TIMEOUT:
                if self.proc.poll() is not None:
                    break
                try:
                    conn.caps.GetCapabilities(re.GetCapabilitiesRequest(), timeout=1.0)
                except grpc.RpcError:
                    time.sleep(0.02)
                    continue
                # gRPC servers bind with SO_REUSEPORT: another process that bound this port
                # too (another test picking "free" ports) would get some of the connections.
                others = listening_sockets(port) - sockets_of(self.proc.pid)
                if not others:
                    return conn, time.monotonic() - t0
                clash = True
                break
            conn.close()
            if clash:
                self.port_clashes += 1
                print(f'chaos: port {port} is also listened on by another process (SO_REUSEPORT); '
                      f'starting again on other ports', flush=True)
                self.kill()
                last = f'port {port} was shared with another process'
                continue
            if self.proc.poll() is None:
                self.kill()
                raise RuntimeError(f'gorego (pid {self.proc.pid}) did not answer GetCapabilities on '
                                   f'127.0.0.1:{port} within {START_TIMEOUT:.0f} s')
            last = f'gorego exited with status {self.proc.returncode} during start-up'
            if 'address' not in self.log_tail(5).lower():
                break
        raise RuntimeError(last)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL by PID and reap; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()

    def terminate(self, timeout=30.0):
        """SIGTERM; returns the exit status, or None if it had to be killed after `timeout`."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def log_tail(self, n=LOG_TAIL_LINES):
        try:
            with open(self.log_path, 'rb') as f:
                lines = f.read().decode(errors='replace').splitlines()
        except OSError:
            return ''
        return '\n'.join(lines[-n:])

    def log_notes(self):
        """Counts of the log's warn and error lines by message, and of lines that are not
        gorego's JSON (gRPC's own log, a crash report), over every start."""
        notes = collections.Counter()
        try:
            with open(self.log_path, 'rb') as f:
                lines = f.read().decode(errors='replace').splitlines()
        except OSError:
            return notes
        for line in lines:
            if line.startswith('--- chaos:') or not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                notes[f'not JSON: {line[:160]}'] += 1
                continue
            if entry.get('level') in ('warn', 'error'):
                notes[f'{entry["level"]}: {entry.get("msg")}'] += 1
        return notes

    def last_start_log(self):
        """The log lines of the latest start."""
        lines = self.log_tail(10_000).splitlines()
        for i in range(len(lines) - 1, -1, -1):
            if lines[i].startswith('--- chaos: start'):
                return '\n'.join(lines[i:])
        return ''

    def blob_path(self, blob):
        return os.path.join(self.data_dir, 'cas', blob.hash[:2], blob.hash[2:4], blob.hash)


# --- reading and judging ---------------------------------------------------------------------

class Checker:
    def __init__(self, ledger, report):
        self.ledger = ledger
        self.report = report

    def judge(self, blob, code, details, data, where, acked, excused):
        """Judges one read of `blob`: `code` is its status (grpc.StatusCode), `data` what
        arrived. True when it read back complete and right."""
        expected = blob_bytes(self.ledger.seed, blob.id, blob.size)
        ok = code == grpc.StatusCode.OK
        if data and data != expected[:len(data)]:
            status = 'answered OK' if ok else f'before {code.name} "{details}"'
            self.report.wrong_bytes(blob.key, f'{where}: {describe_difference(data, expected)}, {status}'
                                    f'{"" if acked else " (not acknowledged, reported present)"}')
            return False
        if ok:
            if len(data) != blob.size:
                self.report.wrong_bytes(blob.key, f'{where}: answered OK with {len(data)} bytes of {blob.size}')
                return False
            self.report.count('bytes read and verified', len(data))
            return True
        if excused:
            return False
        if acked and code == grpc.StatusCode.NOT_FOUND:
            self.report.lost_item(blob.key, f'{where}: NOT_FOUND "{details}" (acknowledged in an earlier call)')
        elif acked and code == grpc.StatusCode.DATA_LOSS:
            self.report.lost_item(blob.key, f'{where}: DATA_LOSS "{details}": the stored copy is damaged')
        else:
            what = 'acknowledged' if acked else 'not acknowledged, reported present'
            self.report.failure(blob.key, f'{where}: {code.name} "{details}" ({what})')
        return False

    def read_stream(self, conn, blob, where, acked, excused_fn):
        got = bytearray()
        code, details = grpc.StatusCode.OK, ''
        try:
            for resp in conn.bs.Read(bs.ReadRequest(resource_name=f'blobs/{blob.hash}/{blob.size}'),
                                     timeout=RPC_TIMEOUT):
                got += resp.data
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
        except ValueError as e:  # the channel was closed under the call (after a kill)
            code, details = grpc.StatusCode.CANCELLED, str(e)
        return self.judge(blob, code, details, bytes(got), where, acked, code != grpc.StatusCode.OK and excused_fn())

    def read_batch(self, conn, blobs, where, acked, excused_fn):
        """BatchReadBlobs of `blobs` (distinct keys); the number read back right."""
        req = re.BatchReadBlobsRequest(digests=[b.digest() for b in blobs])
        try:
            resp = conn.cas.BatchReadBlobs(req, timeout=RPC_TIMEOUT)
        except (grpc.RpcError, ValueError) as e:
            if not excused_fn():
                code = e.code().name if isinstance(e, grpc.RpcError) else 'closed channel'
                detail = e.details() if isinstance(e, grpc.RpcError) else str(e)
                self.report.failure(None, f'{where}: BatchReadBlobs of {len(blobs)} blobs failed: {code} "{detail}"')
            return 0
        by_key = {b.key: b for b in blobs}
        seen = set()
        good = 0
        for r in resp.responses:
            k = dkey(r.digest)
            blob = by_key.get(k)
            if blob is None:
                self.report.failure(k, f'{where}: BatchReadBlobs answered a digest that was not asked for')
                continue
            seen.add(k)
            code = grpc.StatusCode.OK if r.status.code == 0 else _code(r.status.code)
            if self.judge(blob, code, r.status.message, r.data, where, acked, False):
                good += 1
        for k in by_key.keys() - seen:
            self.report.failure(k, f'{where}: BatchReadBlobs left this digest out of its answer')
        return good

    def read_blobs(self, conn, blobs, where, acked, pool):
        """Reads every blob back (large ones by ByteStream, small ones in batches) on `pool`;
        the number read back right."""
        never = lambda: False  # noqa: E731  (verification: nothing excuses a failure)
        futures = []
        batch, batch_bytes = [], 0
        for b in sorted(blobs, key=lambda b: b.size):
            if b.size >= STREAM_MIN:
                futures.append(pool.submit(self.read_stream, conn, b, where, acked, never))
                continue
            if batch and (batch_bytes + b.size > BATCH_BYTES or len(batch) >= 500):
                futures.append(pool.submit(self.read_batch, conn, batch, where, acked, never))
                batch, batch_bytes = [], 0
            batch.append(b)
            batch_bytes += b.size
        if batch:
            futures.append(pool.submit(self.read_batch, conn, batch, where, acked, never))
        return sum(int(f.result()) for f in futures)

    def find_missing(self, conn, digests, where):
        """FindMissingBlobs over `digests` in pieces; the set of missing keys, or None when a
        call failed (reported)."""
        missing = set()
        for i in range(0, len(digests), 4000):
            part = digests[i:i + 4000]
            try:
                resp = conn.cas.FindMissingBlobs(re.FindMissingBlobsRequest(blob_digests=part), timeout=RPC_TIMEOUT)
            except grpc.RpcError as e:
                self.report.failure(None, f'{where}: FindMissingBlobs of {len(part)} digests failed: '
                                          f'{e.code().name} "{e.details()}"')
                return None
            missing.update(dkey(d) for d in resp.missing_blob_digests)
        return missing

    def check_action(self, action, got, where, acked):
        """Compares a returned ActionResult with the one sent."""
        sent = re.ActionResult.FromString(action.bytes)
        if got == sent:
            self.report.count('action results verified')
            return True
        fields = [f.name for f in re.ActionResult.DESCRIPTOR.fields
                  if getattr(got, f.name) != getattr(sent, f.name)]
        self.report.wrong_bytes(action.key, f'{where}: GetActionResult answered a result that differs from the '
                                f'{"acknowledged" if acked else "sent"} one in {", ".join(fields) or "unknown fields"}'
                                f' ({len(got.SerializeToString())} bytes, sent {len(action.bytes)})')
        return False

    def get_actions(self, conn, actions, where, acked):
        """GetActionResult of every action, 64 in flight; the number answered right."""
        good = 0
        for i in range(0, len(actions), 64):
            part = actions[i:i + 64]
            futures = [conn.ac.GetActionResult.future(re.GetActionResultRequest(action_digest=a.digest),
                                                      timeout=RPC_TIMEOUT) for a in part]
            for a, f in zip(part, futures):
                try:
                    got = f.result()
                except grpc.RpcError as e:
                    if not acked and e.code() == grpc.StatusCode.NOT_FOUND:
                        continue
                    if e.code() == grpc.StatusCode.NOT_FOUND:
                        self.report.lost_item(a.key, f'{where}: GetActionResult NOT_FOUND "{e.details()}" '
                                              f'(acknowledged, references {", ".join(a.refs)})')
                    else:
                        self.report.failure(a.key, f'{where}: GetActionResult failed: {e.code().name} "{e.details()}"')
                    continue
                if self.check_action(a, got, where, acked):
                    good += 1
        return good


def _code(n):
    for c in grpc.StatusCode:
        if c.value[0] == n:
            return c
    return grpc.StatusCode.UNKNOWN


# --- the load --------------------------------------------------------------------------------

class Gate:
    """Lets workers run calls against the current connection; the controller closes it to
    park them (around a kill and a verification) and reopens it with a new connection."""

    def __init__(self):
        self.cv = threading.Condition()
        self.conn = None
        self.open = False
        self.stopping = False
        self.active = 0

    def enter(self):
        with self.cv:
            while not self.open and not self.stopping:
                self.cv.wait()
            if self.stopping:
                return None
            self.active += 1
            return self.conn

    def leave(self):
        with self.cv:
            self.active -= 1
            self.cv.notify_all()

    def reopen(self, conn):
        with self.cv:
            self.conn, self.open = conn, True
            self.cv.notify_all()

    def close(self):
        with self.cv:
            self.open = False

    def drain(self, timeout):
        with self.cv:
            return self.cv.wait_for(lambda: self.active == 0, timeout)

    def stop(self):
        with self.cv:
            self.stopping = True
            self.cv.notify_all()


class Load:
    def __init__(self, args, ledger, report, checker, gate):
        self.args = args
        self.ledger = ledger
        self.report = report
        self.checker = checker
        self.gate = gate
        self.never = 0
        self.never_lock = threading.Lock()
        self.tool_errors = []
        names, weights = zip(*OP_WEIGHTS.items())
        self.op_names, self.op_weights = list(names), list(weights)

    def small_size(self, rng):
        r = rng.random()
        if r < 0.03:
            size = 0
        elif r < 0.08:
            size = rng.randint(1, 15)
        elif r < 0.70:
            size = rng.randint(16, 4 * KIB)
        elif r < 0.90:
            size = rng.randint(4 * KIB, 64 * KIB)
        else:
            size = rng.randint(64 * KIB, STREAM_MIN - 1)
        return min(size, self.args.max_blob)

    def stream_size(self, rng):
        lo, hi = min(STREAM_MIN, self.args.max_blob), self.args.max_blob
        if lo == hi:
            return hi
        return min(hi, int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))  # log-uniform

    def error(self, conn, op, e, what):
        """A failed call: excused once its server is being killed, a failure otherwise."""
        if conn.killed:
            self.report.op(op, 'cut by the kill')
            return
        self.report.op(op, 'failed')
        code = e.code().name if isinstance(e, grpc.RpcError) else 'closed channel'
        detail = e.details() if isinstance(e, grpc.RpcError) else str(e)
        self.report.failure(None, f'{op} ({what}) failed while the server was up: {code} "{detail}"')

    def run(self, index):
        rng = random.Random(f'{self.args.seed}/worker/{index}')
        while True:
            conn = self.gate.enter()
            if conn is None:
                return
            try:
                op = rng.choices(self.op_names, self.op_weights)[0]
                getattr(self, 'op_' + op.replace('-', '_'))(conn, rng)
            except Exception as e:  # a bug in this tool: stop the run, loudly
                import traceback
                self.tool_errors.append(f'worker {index}: {traceback.format_exc()}')
                self.report.failure(None, f'chaos tool error in worker {index}: {e!r}')
                return
            finally:
                self.gate.leave()

    def op_batch_update(self, conn, rng):
        blobs, total = [], 0
        for _ in range(rng.randint(1, 16)):
            size = self.small_size(rng)
            if blobs and total + size > BATCH_BYTES:
                break
            blobs.append(self.ledger.new_blob(size))
            total += size
        req = re.BatchUpdateBlobsRequest(requests=[
            re.BatchUpdateBlobsRequest.Request(digest=b.digest(), data=data) for b, data in blobs])
        try:
            resp = conn.cas.BatchUpdateBlobs(req, timeout=RPC_TIMEOUT)
        except (grpc.RpcError, ValueError) as e:
            return self.error(conn, 'batch-update', e, f'{len(blobs)} blobs, {total} bytes')
        by_key = {b.key: b for b, _ in blobs}
        answered = {dkey(r.digest) for r in resp.responses}
        for k in by_key.keys() - answered:
            self.report.failure(k, 'BatchUpdateBlobs left this digest out of its answer')
        for r in resp.responses:
            b = by_key.get(dkey(r.digest))
            if b is None:
                self.report.failure(dkey(r.digest), 'BatchUpdateBlobs answered a digest that was not sent')
            elif r.status.code == 0:
                self.ledger.ack_blob(b)
            elif not conn.killed:
                self.report.failure(b.key, f'BatchUpdateBlobs per-blob status {_code(r.status.code).name} '
                                           f'"{r.status.message}"')
        self.report.op('batch-update', 'ok')
        self.report.count('blobs sent in batches', len(blobs))

    def op_bytestream_write(self, conn, rng):
        blob, data = self.ledger.new_blob(self.stream_size(rng))
        name = f'uploads/{uuid.uuid4()}/blobs/{blob.hash}/{blob.size}'
        sent = [0]

        def requests():
            for off in range(0, blob.size, CHUNK):
                piece = data[off:off + CHUNK]
                sent[0] += 1
                yield bs.WriteRequest(resource_name=name if off == 0 else '', write_offset=off, data=piece,
                                      finish_write=off + len(piece) >= blob.size)

        chunks = (blob.size + CHUNK - 1) // CHUNK
        try:
            resp = conn.bs.Write(requests(), timeout=RPC_TIMEOUT)
        except (grpc.RpcError, ValueError) as e:
            if conn.killed and 0 < sent[0] < chunks:
                self.report.count('ByteStream writes cut mid-stream by a kill')
            return self.error(conn, 'bytestream-write', e, f'{blob.key}, {sent[0]} of {chunks} chunks sent')
        if resp.committed_size != blob.size:
            self.report.op('bytestream-write', 'failed')
            self.report.failure(blob.key, f'ByteStream Write answered committed_size {resp.committed_size}, '
                                          f'not the size {blob.size}')
            return
        self.ledger.ack_blob(blob)
        self.report.op('bytestream-write', 'ok')

    def op_batch_read(self, conn, rng):
        picks = {b.key: b for b in self.ledger.pick_acked(rng, large=False, n=rng.randint(1, 20))}
        if not picks:
            return self.op_batch_update(conn, rng)
        blobs, total = [], 0
        for b in picks.values():
            if total + b.size <= BATCH_BYTES:
                blobs.append(b)
                total += b.size
        good = self.checker.read_batch(conn, blobs, 'BatchReadBlobs during the load', True, lambda: conn.killed)
        self.report.op('batch-read', 'ok' if good == len(blobs) else ('cut by the kill' if conn.killed else 'failed'))
        self.report.count('blob reads verified during the load', good)

    def op_bytestream_read(self, conn, rng):
        picks = self.ledger.pick_acked(rng, large=True) or self.ledger.pick_acked(rng, large=False)
        if not picks:
            return self.op_bytestream_write(conn, rng)
        good = self.checker.read_stream(conn, picks[0], 'ByteStream Read during the load', True, lambda: conn.killed)
        self.report.op('bytestream-read', 'ok' if good else ('cut by the kill' if conn.killed else 'failed'))
        self.report.count('blob reads verified during the load', int(good))

    def op_update_action_result(self, conn, rng):
        refs = self.ledger.pick_refs(rng, rng.randint(1, 4))
        if not refs:
            return self.op_batch_update(conn, rng)
        n = self.ledger.new_action_id()
        digest = action_digest(self.args.seed, n)
        result = re.ActionResult(exit_code=rng.choice((0, 0, 0, 1, 2, 127)))
        outputs = refs[1:] if len(refs) > 1 and rng.random() < 0.5 else refs
        for i, b in enumerate(outputs):
            result.output_files.add(path=f'out/{n}/file{i}', digest=b.digest(), is_executable=rng.random() < 0.2)
        if len(refs) > 1 and outputs is not refs:
            result.stdout_digest.CopyFrom(refs[0].digest())
        result.execution_metadata.worker = f'chaos-{n % 7}'
        result.execution_metadata.queued_timestamp.FromNanoseconds(1_700_000_000_000_000_000 + n)
        action = Action(n, digest, result.SerializeToString(), sorted({b.key for b in refs}))
        self.ledger.attempt_action(action)
        try:
            conn.ac.UpdateActionResult(re.UpdateActionResultRequest(action_digest=digest, action_result=result),
                                       timeout=RPC_TIMEOUT)
        except (grpc.RpcError, ValueError) as e:
            return self.error(conn, 'update-action-result', e, action.key)
        self.ledger.ack_action(action)
        self.report.op('update-action-result', 'ok')

    def op_get_action_result(self, conn, rng):
        action = self.ledger.pick_action(rng)
        if action is None:
            return self.op_update_action_result(conn, rng)
        try:
            got = conn.ac.GetActionResult(re.GetActionResultRequest(action_digest=action.digest), timeout=RPC_TIMEOUT)
        except (grpc.RpcError, ValueError) as e:
            if isinstance(e, grpc.RpcError) and e.code() == grpc.StatusCode.NOT_FOUND:
                self.report.op('get-action-result', 'failed')
                return self.report.lost_item(action.key, f'GetActionResult during the load: NOT_FOUND "{e.details()}"'
                                             f' (acknowledged, references {", ".join(action.refs)})')
            return self.error(conn, 'get-action-result', e, action.key)
        ok = self.checker.check_action(action, got, 'GetActionResult during the load', True)
        self.report.op('get-action-result', 'ok' if ok else 'failed')

    def op_find_missing(self, conn, rng):
        present = {b.key: b for b in self.ledger.pick_acked(rng, large=rng.random() < 0.3, n=rng.randint(1, 50))}
        with self.never_lock:
            first = self.never
            self.never += 3
        absent = {dkey(d): d for d in (never_written_digest(self.args.seed, first + i) for i in range(3))}
        digests = [b.digest() for b in present.values()] + list(absent.values())
        rng.shuffle(digests)
        try:
            resp = conn.cas.FindMissingBlobs(re.FindMissingBlobsRequest(blob_digests=digests), timeout=RPC_TIMEOUT)
        except (grpc.RpcError, ValueError) as e:
            return self.error(conn, 'find-missing', e, f'{len(digests)} digests')
        missing = {dkey(d) for d in resp.missing_blob_digests}
        for k in missing & present.keys():
            self.report.lost_item(k, 'FindMissingBlobs during the load reported an acknowledged blob missing')
        for k in absent.keys() - missing:
            self.report.failure(k, 'FindMissingBlobs during the load reported a digest that was never written present')
        self.report.op('find-missing', 'ok')


# --- the run ---------------------------------------------------------------------------------

class Run:
    def __init__(self, args, root):
        self.args = args
        self.root = root
        self.ledger = Ledger(args.seed)
        self.report = Report()
        self.checker = Checker(self.ledger, self.report)
        self.gate = Gate()
        self.load = Load(args, self.ledger, self.report, self.checker, self.gate)
        self.server = Server(args.binary, root, args.max_size)
        self.rng = random.Random(f'{args.seed}/controller')
        self.delays = random.Random(f'{args.seed}/kill times')
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, args.threads))
        self.restart_seconds = []
        self.slow_restarts = []  # (what, that start's server log)
        self.cycles_done = 0
        self.corrupted = {}   # key -> how (self-check)
        self.read_back = set()  # keys read back by the last check (this process has verified them)

    def main(self):
        conn, _ = self.server.start()
        print(f'chaos: gorego pid {self.server.proc.pid} on {conn.target}, data dir {self.server.data_dir}', flush=True)
        workers = [threading.Thread(target=self.load.run, args=(i,), name=f'load-{i}', daemon=True)
                   for i in range(self.args.threads)]
        for w in workers:
            w.start()
        try:
            for cycle in range(1, self.args.cycles + 1):
                conn = self.cycle(cycle, conn)
                if conn is None or self.load.tool_errors:
                    break
        finally:
            self.gate.stop()
            for w in workers:
                w.join(DRAIN_TIMEOUT)
        if conn is not None and not self.load.tool_errors:
            self.clean_restart(conn)
        self.pool.shutdown()

    def cycle(self, cycle, conn):
        """One cycle: load, SIGKILL at a random moment, restart, verify. Returns the new
        connection, or None when the server could not be restarted."""
        self.ledger.cycle = cycle
        if self.ledger.footprint > self.args.max_size // 2:
            self.report.failure(None, f'cycle {cycle}: the blobs written take up to {human(self.ledger.footprint)}, '
                                      f'half of --max-size {human(self.args.max_size)}: more could be evicted, '
                                      f'which would look like a loss; raise --max-size or run fewer cycles')
            return None
        self.gate.reopen(conn)
        delay = self.delays.uniform(self.args.min_delay, self.args.max_delay)
        time.sleep(delay)
        if not self.server.alive():
            self.report.failure(None, f'cycle {cycle}: gorego exited by itself with status '
                                      f'{self.server.proc.returncode} during the load (before the kill)')
        conn.killed = True
        t_kill = time.monotonic()
        status = self.server.kill()
        t_reaped = time.monotonic()
        if status != -signal.SIGKILL:
            self.report.failure(None, f'cycle {cycle}: gorego exit status {status} after SIGKILL')
        self.gate.close()
        conn.close()
        if not self.gate.drain(DRAIN_TIMEOUT):
            self.report.failure(None, f'cycle {cycle}: load threads still in calls {DRAIN_TIMEOUT:.0f} s '
                                      f'after the kill')
            return None
        t_drained = time.monotonic()
        if self.args.self_check_corrupt and not any(h == 'stopped' for h in self.corrupted.values()):
            self.corrupt('stopped')
        try:
            conn, start_seconds = self.server.start()
        except RuntimeError as e:
            self.report.failure(None, f'cycle {cycle}: restart after SIGKILL failed: {e}')
            return None
        self.restart_seconds.append(time.monotonic() - t_kill)
        if self.restart_seconds[-1] > SLOW_RESTART:  # not a failure, but worth a look: keep the evidence
            note = (f'cycle {cycle}: serving {self.restart_seconds[-1]:.2f} s after the kill: reaped after '
                    f'{t_reaped - t_kill:.2f} s, load threads parked after {t_drained - t_reaped:.2f} s more, '
                    f'port accepting {self.server.port_open_seconds:.2f} s and GetCapabilities answered '
                    f'{start_seconds:.2f} s after the exec')
            self.slow_restarts.append((note, self.server.last_start_log()))
            print(f'chaos: slow restart: {note}', flush=True)
        final = cycle == self.args.cycles
        t_check = time.monotonic()
        self.verify(cycle, conn, final)
        check_seconds = time.monotonic() - t_check
        self.cycles_done = cycle
        if self.args.self_check_corrupt and cycle >= 2 and not any(h == 'running' for h in self.corrupted.values()):
            self.corrupt('running', conn)
        acks = self.ledger.acks_per_cycle[cycle]
        print(f'chaos: cycle {cycle}: killed after {delay:.2f} s, {acks} writes acknowledged in the cycle, '
              f'serving again {self.restart_seconds[-1]:.2f} s after the kill, checked in {check_seconds:.1f} s; '
              f'{len(self.ledger.acked)} blobs and {len(self.ledger.actions)} results acknowledged in all', flush=True)
        if acks == 0:
            self.report.failure(None, f'cycle {cycle}: no write was acknowledged in {delay:.2f} s of load')
        return conn

    def verify(self, cycle, conn, final):
        where = f'check after restart {cycle}'
        led = self.ledger
        with led.lock:
            acked = list(led.acked.values())
            fresh = [led.acked[k] for k in led.fresh]
            led.fresh.clear()
            unacked = list(led.unacked.values())
            led.unacked.clear()
            actions = list(led.actions.values())
            fresh_actions = [led.actions[k] for k in led.fresh_actions]
            led.fresh_actions.clear()
            unacked_actions = list(led.unacked_actions.values())
            led.unacked_actions.clear()

        # 1. Presence of everything acknowledged, and of what was sent without an answer.
        missing = self.checker.find_missing(conn, [b.digest() for b in acked], where)
        if missing is None:
            return
        for k in missing:
            self.report.lost_item(k, f'{where}: FindMissingBlobs reports the acknowledged blob missing')
        self.report.count('acknowledged blobs found present', len(acked) - len(missing))
        present_unacked = []
        if unacked:
            m = self.checker.find_missing(conn, [b.digest() for b in unacked], where)
            present_unacked = [b for b in unacked if m is not None and b.key not in m]
            self.report.count('unacknowledged blobs checked', len(unacked))
            self.report.count('unacknowledged blobs present', len(present_unacked))

        # 2. Bytes: everything acknowledged since the last check, a sample of the rest (all of
        # it after the last restart), and every unacknowledged blob reported present.
        if final:
            to_read = acked
        else:
            fresh_keys = {b.key for b in fresh}
            older = [b for b in acked if b.key not in fresh_keys]
            budget = self.args.recheck_bytes
            if sum(b.size for b in older) > budget:
                self.rng.shuffle(older)
                sample = []
                for b in older:
                    if budget < b.size:
                        continue
                    sample.append(b)
                    budget -= b.size
                older = sample
            to_read = fresh + older
        to_read = [b for b in to_read if b.key not in missing]
        self.read_back = {b.key for b in to_read}
        good = self.checker.read_blobs(conn, to_read, where, True, self.pool)
        self.report.count('acknowledged blob read-backs after restarts', len(to_read))
        self.report.count('acknowledged blob bytes read back after restarts', sum(b.size for b in to_read))
        self.report.count('acknowledged blob read-backs right', good)
        if present_unacked:
            self.checker.read_blobs(conn, present_unacked, where + ' (not acknowledged, reported present)', False,
                                    self.pool)
            self.report.count('unacknowledged present blobs read back', len(present_unacked))

        # 3. ActionResults: the new ones, a sample of the older (all after the last restart),
        # and those sent without an answer (may be absent; if present, equal).
        if final:
            act = actions
        else:
            fresh_keys = {a.key for a in fresh_actions}
            older = [a for a in actions if a.key not in fresh_keys]
            act = fresh_actions + self.rng.sample(older, min(len(older), self.args.recheck_results))
        self.checker.get_actions(conn, act, where, True)
        self.report.count('acknowledged result checks after restarts', len(act))
        if unacked_actions:
            self.checker.get_actions(conn, unacked_actions, where + ' (not acknowledged)', False)
            self.report.count('unacknowledged results checked', len(unacked_actions))

    def clean_restart(self, conn):
        """SIGTERM (exit 0 expected), then one more start on the snapshot: all present."""
        conn.close()
        status = self.server.terminate()
        if status != 0:
            self.report.failure(None, f'SIGTERM: gorego exit status {status}, expected 0')
        try:
            conn, seconds = self.server.start()
        except RuntimeError as e:
            self.report.failure(None, f'start after the clean stop failed: {e}')
            return
        where = 'check after the clean restart'
        with self.ledger.lock:
            acked = list(self.ledger.acked.values())
            actions = list(self.ledger.actions.values())
        missing = self.checker.find_missing(conn, [b.digest() for b in acked], where)
        for k in missing or ():
            self.report.lost_item(k, f'{where}: FindMissingBlobs reports the acknowledged blob missing')
        self.checker.get_actions(conn, actions, where, True)
        conn.close()
        status = self.server.terminate()
        if status != 0:
            self.report.failure(None, f'second SIGTERM: gorego exit status {status}, expected 0')

    def corrupt(self, how, conn=None):
        """Self-check: flips one byte of an acknowledged large blob's file that no result
        references; `stopped` while the server is down, `running` while it serves (and reads
        it back at once, so the checker meets the served bytes)."""
        with self.ledger.lock:
            # Running: a blob this process has read back, so it will not hash it again.
            candidates = [self.ledger.acked[k] for k in self.ledger.acked_large
                          if k not in self.ledger.referenced and k not in self.corrupted
                          and (conn is None or k in self.read_back)]
            if not candidates:
                return
            blob = candidates[self.rng.randrange(len(candidates))]
            self.ledger.tainted.add(blob.key)
        path = self.server.blob_path(blob)
        offset = blob.size // 2
        with open(path, 'r+b') as f:
            f.seek(offset)
            old = f.read(1)
            f.seek(offset)
            f.write(bytes([old[0] ^ 0x5a]))
        self.corrupted[blob.key] = how
        print(f'chaos: self-check: flipped byte {offset} of {path} ({blob.key}) with the server {how}', flush=True)
        if conn is not None:
            self.checker.read_stream(conn, blob, 'self-check read after the corruption', True, lambda: False)

    def summary(self):
        r, led = self.report, self.ledger
        c = r.counts
        print(f'chaos: summary: seed {self.args.seed}, {self.args.threads} threads, blobs up to '
              f'{human(self.args.max_blob)}, kill after {self.args.min_delay}-{self.args.max_delay} s')
        print(f'chaos: cycles: {self.cycles_done} of {self.args.cycles} killed with SIGKILL, restarted and checked; '
              f'restart (SIGKILL to GetCapabilities answered) median '
              f'{statistics.median(self.restart_seconds) if self.restart_seconds else 0:.2f} s, max '
              f'{max(self.restart_seconds, default=0):.2f} s')
        ops = collections.defaultdict(dict)
        for (op, outcome), n in r.ops.items():
            ops[op][outcome] = n
        total = sum(r.ops.values())
        print(f'chaos: operations: {total} in all')
        for op in OP_WEIGHTS:
            if op in ops:
                print(f'chaos:   {op:22} ' + ', '.join(f'{n} {o}' for o, n in sorted(ops[op].items())))
        print(f'chaos: ByteStream writes cut mid-stream by a kill: {c["ByteStream writes cut mid-stream by a kill"]}')
        print(f'chaos: acknowledged: {len(led.acked)} blobs ({human(sum(b.size for b in led.acked.values()))}), '
              f'{len(led.actions)} action results; sent without an answer and checked after a restart: '
              f'{c["unacknowledged blobs checked"]} blobs ({c["unacknowledged blobs present"]} present, read back), '
              f'{c["unacknowledged results checked"]} results')
        print(f'chaos: checked after restarts: {c["acknowledged blob read-backs after restarts"]} blob read-backs '
              f'({human(c["acknowledged blob bytes read back after restarts"])}), '
              f'{c["acknowledged result checks after restarts"]} result lookups, '
              f'{c["acknowledged blobs found present"]} blob presence checks; during the load: '
              f'{c["blob reads verified during the load"]} blob reads verified')
        print(f'chaos: bytes read and verified in all: {c["bytes read and verified"]} '
              f'({human(c["bytes read and verified"])})')
        print(f'chaos: wrong bytes: {len(r.wrong)} items; lost acknowledged items: {len(r.lost)}; '
              f'other failures: {len(r.other)}')
        for title, items in (('wrong bytes', r.wrong), ('lost', r.lost)):
            for k, details in list(items.items())[:DETAIL_LINES]:
                more = f' (and {len(details) - 1} more)' if len(details) > 1 else ''
                print(f'chaos:   {title}: {k}: {details[0]}{more}')
        for k, detail in r.other[:DETAIL_LINES]:
            print(f'chaos:   failure: {k or "-"}: {detail}')
        for note, log in self.slow_restarts[:5]:
            print(f'chaos: slow restart: {note}; the server log of that start:\n{log}')
        notes = self.server.log_notes()
        clashes = (f', {self.server.port_clashes} redone on other ports because another process shared the port'
                   if self.server.port_clashes else '')
        print(f'chaos: server log ({self.server.starts} starts{clashes}): {sum(notes.values())} warn/error or '
              f'non-JSON lines' + (':' if notes else ''))
        for note, n in notes.most_common(DETAIL_LINES):
            print(f'chaos:   {n} x {note}')
        for e in self.load.tool_errors:
            print(e, file=sys.stderr)

    def verdict(self):
        """Exit status and a last line."""
        r, led = self.report, self.ledger
        problems = []
        if r.wrong:
            problems.append(f'{len(r.wrong)} item(s) served wrong bytes')
        if r.lost:
            problems.append(f'{len(r.lost)} acknowledged item(s) lost')
        if r.other:
            problems.append(f'{len(r.other)} other failure(s)')
        if self.cycles_done != self.args.cycles:
            problems.append(f'only {self.cycles_done} of {self.args.cycles} cycles restarted and checked')
        if not led.acked and not led.actions:
            problems.append('no write was acknowledged at all (the load made no progress)')
        if not self.args.self_check_corrupt:
            if problems:
                return 1, 'chaos: FAIL: ' + '; '.join(problems)
            return 0, 'chaos: PASS'
        # Self-check: exactly the corrupted blobs must be reported, one at least as wrong bytes.
        if len(self.corrupted) != 2:
            return 1, (f'chaos: self-check FAIL: corrupted {len(self.corrupted)} blob(s), wanted 2 '
                       f'(no acknowledged large blob free of references?)')
        reported = r.keys_reported()
        missed = [k for k in self.corrupted if k not in reported]
        extra = sorted(k or '-' for k in reported - set(self.corrupted))
        if missed:
            return 1, f'chaos: self-check FAIL: corruption of {", ".join(missed)} was NOT detected'
        if extra:
            return 1, f'chaos: self-check FAIL: failures beyond the corrupted blobs: {", ".join(extra)}'
        if not any(k in r.wrong for k in self.corrupted):
            return 1, 'chaos: self-check FAIL: no corrupted blob was reported as wrong bytes'
        how = '; '.join(f'{k} (corrupted with the server {h}): '
                        f'{"wrong bytes" if k in r.wrong else ""}{" and " if k in r.wrong and k in r.lost else ""}'
                        f'{"lost" if k in r.lost else ""}' for k, h in self.corrupted.items())
        return 0, f'chaos: self-check PASS: the checker reported exactly the corrupted blobs: {how}'


class Interrupted(Exception):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--binary', required=True, help='the gorego binary')
    p.add_argument('--cycles', type=int, default=4, help='kill -9 / restart / check cycles (default 4)')
    p.add_argument('--seed', type=int, default=1, help='seed of blob contents, sizes, the op mix and kill times')
    p.add_argument('--threads', type=int, default=4, help='load threads (default 4)')
    p.add_argument('--max-blob', type=parse_size, default=4 * MIB, help='largest blob, e.g. 4MiB (default)')
    p.add_argument('--min-delay', type=float, default=0.3, help='earliest kill, seconds into a cycle (0.3)')
    p.add_argument('--max-delay', type=float, default=3.0, help='latest kill, seconds into a cycle (3.0)')
    p.add_argument('--recheck-bytes', type=parse_size, default=64 * MIB,
                   help='bytes of older blobs re-read after each restart besides the new ones (64MiB); '
                        'after the last restart everything is read')
    p.add_argument('--recheck-results', type=int, default=500,
                   help='older ActionResults re-checked after each restart besides the new ones (500)')
    p.add_argument('--max-size', type=parse_size, default=20 * 1024 * MIB,
                   help='the server\'s --max-size (20GiB); the run fails rather than write half of it (eviction '
                        'would look like loss)')
    p.add_argument('--keep', action='store_true', help='keep the temp dir (data dir, server log) on failure')
    p.add_argument('--self-check-corrupt', action='store_true',
                   help='corrupt two acknowledged blobs on disk (one with the server down, one while it runs) '
                        'and pass only if exactly they are reported')
    args = p.parse_args()
    if not os.access(args.binary, os.X_OK):
        p.error(f'--binary {args.binary} is not an executable file')
    if args.cycles < 1 or args.threads < 1 or not 0 < args.min_delay <= args.max_delay:
        p.error('--cycles and --threads must be at least 1, and 0 < --min-delay <= --max-delay')
    if args.max_blob < KIB:
        p.error(f'--max-blob {args.max_blob} is below 1 KiB')
    if args.self_check_corrupt and (args.cycles < 2 or args.max_blob < STREAM_MIN):
        p.error('--self-check-corrupt needs --cycles 2 or more and --max-blob of at least 256KiB')
    args.binary = os.path.abspath(args.binary)

    root = tempfile.mkdtemp(prefix='gorego-chaos.')
    run = Run(args, root)

    def on_signal(signum, _frame):
        raise Interrupted(signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    status, last = 1, 'chaos: FAIL: interrupted'
    t0 = time.monotonic()
    try:
        run.main()
        run.summary()
        status, last = run.verdict()
    except Interrupted as e:
        run.report.quiet = True  # calls still in flight fail now: not findings
        status, last = 128 + e.signum, f'chaos: FAIL: interrupted by {signal.Signals(e.signum).name}'
    except RuntimeError as e:  # the server did not start: the message says why
        status, last = 1, f'chaos: FAIL: {e}'
    except Exception as e:  # a bug in the tool
        import traceback
        traceback.print_exc()
        status, last = 1, f'chaos: FAIL: {e}'
    finally:
        run.server.kill()  # by PID; a no-op when it already exited
        failed = status != 0
        if failed:
            print(f'chaos: last {LOG_TAIL_LINES} lines of the server log ({run.server.log_path}):', file=sys.stderr)
            print(run.server.log_tail(), file=sys.stderr)
        if failed and args.keep:
            print(f'chaos: kept {root}', file=sys.stderr)
        else:
            t_clean = time.monotonic()
            remove_tree(root)
            last += f' (removing the temp dir took {time.monotonic() - t_clean:.1f} s)'
    print(f'{last} ({time.monotonic() - t0:.1f} s in all)', flush=True)
    return status


if __name__ == '__main__':
    sys.exit(main())
