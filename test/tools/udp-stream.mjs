#!/usr/bin/env node
// A numbered UDP stream that counts loss: for measuring how many packets a change costs.
//
//   udp-stream.mjs receiver --port P --status FILE [--bind ADDR] [--rcvbuf BYTES]
//   udp-stream.mjs sender --host H --port P --status FILE [--pps 500] [--size 200] [--duration-ms MS]
//                         [--canary STRING]
//
// Each datagram carries a u64 stream id, a u64 sequence number and the send time. The
// receiver keeps a bitmap of received sequence numbers per stream and reports received,
// duplicates, reordered, the highest sequence seen, and the missing runs (gaps) with their
// length; the sender reports how many it sent. Loss = sender.sent - receiver.received.
// Both rewrite a JSON status file (atomically) every 250 ms and on SIGTERM/SIGINT ("done").
// With --canary, the bytes after the header are the canary repeated (for leak captures).
// The receiver also reports its namespace's UDP RcvbufErrors (/proc/self/net/snmp, read at each
// status write): datagrams that crossed the network and were dropped because this process did
// not read them in time (a starved receiver), so a loss can be told from the path's. --rcvbuf
// asks for a larger socket receive buffer (the kernel caps it at net.core.rmem_max); the status
// says what the kernel granted.
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';

function parseArgs(argv) {
  const [cmd, ...rest] = argv;
  const o = { cmd };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    o[a.slice(2)] = rest[++i];
  }
  return o;
}

function writeStatus(file, obj) {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(obj)}\n`);
  renameSync(tmp, file);
}

const HEADER = 24;

/** Udp RcvbufErrors of this process's network namespace (IPv4 table), or null when unreadable. */
function rcvbufErrors() {
  try {
    const lines = readFileSync('/proc/self/net/snmp', 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('Udp: '));
    const names = lines[0].split(/\s+/);
    const values = lines[1].split(/\s+/);
    const i = names.indexOf('RcvbufErrors');
    return i > 0 ? Number(values[i]) : null;
  } catch {
    return null;
  }
}
const MAX_GAPS = 50;

function receiver(o) {
  const streams = new Map();
  const st = {
    role: 'receiver',
    pid: process.pid,
    startedAt: Date.now(),
    now: 0,
    port: Number(o.port),
    datagrams: 0,
    rcvbufErrors: null,
    rcvbufBytes: null,
    streams: {},
    done: false,
  };
  const summarize = (s) => {
    // Missing runs below the highest sequence seen.
    const gaps = [];
    let longest = 0;
    let missing = 0;
    for (let q = 0; q <= s.maxSeq;) {
      if (s.bits[q] === 1) {
        q++;
        continue;
      }
      let e = q;
      while (e <= s.maxSeq && s.bits[e] !== 1) e++;
      const len = e - q;
      missing += len;
      longest = Math.max(longest, len);
      if (gaps.length < MAX_GAPS) gaps.push({ from: q, count: len });
      q = e;
    }
    return {
      received: s.received,
      duplicates: s.duplicates,
      reordered: s.reordered,
      maxSeq: s.maxSeq,
      missingBelowMax: missing,
      longestGap: longest,
      gaps,
      firstAt: s.firstAt,
      lastAt: s.lastAt,
    };
  };
  const flush = () => {
    st.now = Date.now();
    st.rcvbufErrors = rcvbufErrors();
    for (const [id, s] of streams) st.streams[id] = summarize(s);
    writeStatus(o.status, st);
  };
  const sock = dgram.createSocket('udp4');
  sock.on('message', (m) => {
    if (m.length < HEADER) return;
    st.datagrams++;
    const id = m.subarray(0, 8).toString('hex');
    const seq = Number(m.readBigUInt64BE(8));
    let s = streams.get(id);
    if (s === undefined) {
      s = {
        bits: new Uint8Array(1024),
        received: 0,
        duplicates: 0,
        reordered: 0,
        maxSeq: -1,
        firstAt: Date.now(),
        lastAt: 0,
      };
      streams.set(id, s);
    }
    if (seq >= s.bits.length) {
      let n = s.bits.length;
      while (n <= seq) n *= 2;
      const b = new Uint8Array(n);
      b.set(s.bits);
      s.bits = b;
    }
    s.lastAt = Date.now();
    if (s.bits[seq] === 1) {
      s.duplicates++;
      return;
    }
    s.bits[seq] = 1;
    s.received++;
    if (seq < s.maxSeq) s.reordered++;
    else s.maxSeq = seq;
  });
  sock.bind(Number(o.port), o.bind ?? '0.0.0.0', () => {
    if (o.rcvbuf !== undefined) sock.setRecvBufferSize(Number(o.rcvbuf));
    st.rcvbufBytes = sock.getRecvBufferSize();
    flush();
  });
  setInterval(flush, 250);
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
      st.done = true;
      flush();
      process.exit(0);
    });
  }
}

function sender(o) {
  const pps = Number(o.pps ?? 500);
  const size = Math.max(HEADER, Number(o.size ?? 200));
  const id = randomBytes(8);
  const filler = Buffer.alloc(size, 0x55);
  if (o.canary !== undefined && o.canary !== '') {
    const unit = Buffer.from(o.canary);
    for (let off = HEADER; off < size; off += unit.length) unit.copy(filler, off, 0, Math.min(unit.length, size - off));
  }
  const st = {
    role: 'sender',
    pid: process.pid,
    startedAt: Date.now(),
    now: 0,
    stream: id.toString('hex'),
    pps,
    size,
    sent: 0,
    sendErrors: 0,
    lastError: undefined,
    done: false,
  };
  const flush = () => {
    st.now = Date.now();
    writeStatus(o.status, st);
  };
  const sock = dgram.createSocket('udp4');
  sock.on('error', (e) => {
    st.sendErrors++;
    st.lastError = e.code ?? e.message;
  });
  let seq = 0n;
  const t0 = Date.now();
  // Catch up on the schedule each tick so the rate holds even when timers run late.
  setInterval(() => {
    const due = Math.floor(((Date.now() - t0) * pps) / 1000);
    while (Number(seq) < due) {
      const b = Buffer.from(filler);
      id.copy(b, 0);
      b.writeBigUInt64BE(seq, 8);
      b.writeBigUInt64BE(BigInt(Date.now()), 16);
      sock.send(b, Number(o.port), o.host, (err) => {
        if (err) {
          st.sendErrors++;
          st.lastError = err.code ?? err.message;
        }
      });
      seq++;
      st.sent++;
    }
  }, 5);
  setInterval(flush, 250);
  const stop = () => {
    st.done = true;
    // Give queued sends a moment to leave before the final count is written.
    setTimeout(() => {
      flush();
      process.exit(0);
    }, 50);
  };
  if (o['duration-ms'] !== undefined) setTimeout(stop, Number(o['duration-ms']));
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, stop);
}

const opts = parseArgs(process.argv.slice(2));
if (!opts.status || !opts.port) {
  process.stderr.write('usage: udp-stream.mjs receiver|sender --port P --status FILE [--host H]\n');
  process.exit(2);
}
if (opts.cmd === 'receiver') receiver(opts);
else if (opts.cmd === 'sender') sender(opts);
else {
  process.stderr.write('usage: udp-stream.mjs receiver|sender ...\n');
  process.exit(2);
}
