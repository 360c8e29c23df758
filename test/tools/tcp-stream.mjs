#!/usr/bin/env node
// A long-lived, numbered TCP stream that reports every break: for tests that must prove a
// connection survives something (key rotation, agent restart, peer changes).
//
//   tcp-stream.mjs server --port P --status FILE [--bind ADDR]
//   tcp-stream.mjs client --host H --port P --status FILE
//                  [--rate-bps 2000000] [--record-size 1024] [--no-reconnect]
//                  [--stall-report-ms 1000] [--duration-ms MS]
//
// The client sends fixed-size records (u64 sequence number + filler derived from it) at a
// steady rate; the server checks the sequence and acknowledges the highest one every 100 ms.
// A connection error or close counts as a break; the client then reconnects (unless
// --no-reconnect) and resumes after the last acknowledged record. Silence (no ack progress
// while data is outstanding) is a stall, reported with its length. Both sides rewrite a JSON
// status file (atomically) every 250 ms and once more on SIGTERM/SIGINT with "done": true.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';

function parseArgs(argv) {
  const [cmd, ...rest] = argv;
  const o = { cmd };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const k = a.slice(2);
    if (k.startsWith('no-')) o[k] = true;
    else o[k] = rest[++i];
  }
  return o;
}

function writeStatus(file, obj) {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(obj)}\n`);
  renameSync(tmp, file);
}

const HELLO = 16; // u64 stream id + u64 first sequence number

function record(seq, size) {
  const b = Buffer.alloc(size, Number(seq & 0xffn));
  b.writeBigUInt64BE(seq, 0);
  return b;
}

// ---------------------------------------------------------------------------------------------

function server(o) {
  const size = Number(o['record-size'] ?? 1024);
  const st = {
    role: 'server',
    pid: process.pid,
    startedAt: Date.now(),
    now: 0,
    port: Number(o.port),
    connections: 0,
    active: 0,
    recordsReceived: 0,
    bytesReceived: 0,
    gaps: [],
    duplicates: 0,
    corrupt: 0,
    breaks: [],
    streams: {},
    done: false,
  };
  const flush = () => {
    st.now = Date.now();
    writeStatus(o.status, st);
  };
  const srv = net.createServer((sock) => {
    st.connections++;
    st.active++;
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let stream;
    const acker = setInterval(() => {
      if (stream === undefined) return;
      const a = Buffer.alloc(8);
      a.writeBigInt64BE(BigInt(stream.lastSeq), 0);
      sock.write(a);
    }, 100);
    sock.on('data', (d) => {
      st.bytesReceived += d.length;
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      if (stream === undefined) {
        if (buf.length < HELLO) return;
        const id = buf.readBigUInt64BE(0).toString(16);
        const first = Number(buf.readBigUInt64BE(8));
        stream = st.streams[id] ??= { lastSeq: -1, records: 0, connections: 0 };
        stream.connections++;
        if (first > stream.lastSeq + 1)
          st.gaps.push({ stream: id, expected: stream.lastSeq + 1, got: first, at: Date.now() });
        buf = buf.subarray(HELLO);
      }
      let off = 0;
      while (buf.length - off >= size) {
        const seq = Number(buf.readBigUInt64BE(off));
        if (buf[off + size - 1] !== (seq & 0xff)) st.corrupt++;
        if (seq <= stream.lastSeq) st.duplicates++;
        else {
          if (seq !== stream.lastSeq + 1) st.gaps.push({ expected: stream.lastSeq + 1, got: seq, at: Date.now() });
          stream.lastSeq = seq;
        }
        stream.records++;
        st.recordsReceived++;
        off += size;
      }
      buf = buf.subarray(off);
    });
    let ended = false;
    const end = (why) => {
      if (ended) return;
      ended = true;
      clearInterval(acker);
      st.active--;
      if (why !== undefined)
        st.breaks.push({
          at: Date.now(),
          error: why,
          stream: stream === undefined ? undefined : Object.keys(st.streams).find((k) => st.streams[k] === stream),
        });
    };
    sock.on('error', (e) => {
      end(e.code ?? e.message);
      sock.destroy();
    });
    sock.on('close', () => end(undefined));
  });
  srv.listen(Number(o.port), o.bind ?? '0.0.0.0', () => flush());
  setInterval(flush, 250);
  for (const s of ['SIGTERM', 'SIGINT']) {
    process.on(s, () => {
      st.done = true;
      flush();
      process.exit(0);
    });
  }
}

// ---------------------------------------------------------------------------------------------

function client(o) {
  const size = Number(o['record-size'] ?? 1024);
  const rate = Number(o['rate-bps'] ?? 2_000_000);
  const stallReport = Number(o['stall-report-ms'] ?? 1000);
  const reconnect = o['no-reconnect'] !== true;
  const id = randomBytes(8);
  const st = {
    role: 'client',
    pid: process.pid,
    startedAt: Date.now(),
    now: 0,
    stream: id.toString('hex'),
    connected: false,
    connections: 0,
    breaks: [],
    recordsSent: 0,
    bytesSent: 0,
    ackedSeq: -1,
    bytesAcked: 0,
    maxStallMs: 0,
    stalls: [],
    lastError: undefined,
    done: false,
  };
  let nextSeq = 0n;
  let sock;
  let lastProgress = Date.now();
  let stalledSince;
  let stopping = false;
  const flush = () => {
    st.now = Date.now();
    writeStatus(o.status, st);
  };

  const connect = () => {
    const s = net.connect({ host: o.host, port: Number(o.port) });
    sock = s;
    s.setNoDelay(true);
    let ackBuf = Buffer.alloc(0);
    s.on('connect', () => {
      st.connected = true;
      st.connections++;
      lastProgress = Date.now();
      nextSeq = BigInt(st.ackedSeq + 1); // resume after what the server confirmed
      const hello = Buffer.alloc(HELLO);
      id.copy(hello, 0);
      hello.writeBigUInt64BE(nextSeq, 8);
      s.write(hello);
    });
    s.on('data', (d) => {
      ackBuf = Buffer.concat([ackBuf, d]);
      while (ackBuf.length >= 8) {
        const acked = Number(ackBuf.readBigInt64BE(0));
        ackBuf = ackBuf.subarray(8);
        if (acked > st.ackedSeq) {
          st.bytesAcked += (acked - st.ackedSeq) * size;
          st.ackedSeq = acked;
          lastProgress = Date.now();
        }
      }
    });
    const broke = (why) => {
      if (sock !== s) return;
      sock = undefined;
      st.connected = false;
      if (stopping) return;
      st.breaks.push({ at: Date.now(), error: why, ackedSeq: st.ackedSeq });
      st.lastError = why;
      if (reconnect) setTimeout(connect, 100);
    };
    s.on('error', (e) => broke(e.code ?? e.message));
    s.on('close', () => broke('closed'));
  };

  // Send at the configured rate, in 10 ms ticks, never queueing more than ~1 s in userspace.
  const perTick = Math.max(1, Math.round(rate / 100 / size));
  setInterval(() => {
    const now = Date.now();
    const outstanding = Number(nextSeq) - 1 > st.ackedSeq;
    if (outstanding && now - lastProgress > 300) {
      stalledSince ??= lastProgress;
      st.maxStallMs = Math.max(st.maxStallMs, now - stalledSince);
    } else if (stalledSince !== undefined) {
      const ms = lastProgress - stalledSince;
      if (ms >= stallReport) st.stalls.push({ from: stalledSince, ms });
      stalledSince = undefined;
    }
    if (stopping || sock === undefined || !st.connected || sock.writableLength > rate) return;
    for (let k = 0; k < perTick; k++) {
      sock.write(record(nextSeq, size));
      nextSeq++;
      st.recordsSent++;
      st.bytesSent += size;
    }
  }, 10);
  setInterval(flush, 250);
  connect();
  const stop = () => {
    stopping = true;
    st.done = true;
    if (stalledSince !== undefined) st.stalls.push({ from: stalledSince, ms: Date.now() - stalledSince, open: true });
    flush();
    // Close with a FIN, not by exiting: a socket closed by process exit with acks still unread
    // is reset (RST), and the server would record that teardown as a broken stream.
    const s = sock;
    if (s === undefined) process.exit(0);
    s.once('close', () => process.exit(0));
    s.end();
    setTimeout(() => process.exit(0), 1000);
  };
  if (o['duration-ms'] !== undefined) setTimeout(stop, Number(o['duration-ms']));
  for (const s of ['SIGTERM', 'SIGINT']) process.on(s, stop);
}

const opts = parseArgs(process.argv.slice(2));
if (!opts.status || !opts.port) {
  process.stderr.write('usage: tcp-stream.mjs server|client --port P --status FILE [--host H]\n');
  process.exit(2);
}
if (opts.cmd === 'server') server(opts);
else if (opts.cmd === 'client') client(opts);
else {
  process.stderr.write('usage: tcp-stream.mjs server|client ...\n');
  process.exit(2);
}
