#!/usr/bin/env node
// Canary traffic for leak tests: a recognisable byte string sent pod to pod over TCP and UDP.
// The server echoes everything back, so the canary crosses the wire in both directions.
//
//   canary.mjs server --port P [--bind ADDR] [--idle-exit-ms MS]
//       Echoes TCP streams and UDP datagrams on port P until killed (or idle for MS).
//   canary.mjs client --proto tcp|udp --host H --port P --canary STRING
//                     [--count N] [--size BYTES] [--timeout-ms MS]
//       Sends N messages of SIZE bytes, each filled with the canary, waits for the echo and
//       prints one JSON line: {"ok":true,"proto":"tcp","sent":N,"echoed":N,"bytes":...,"ms":...}.
//       Exit 0 when every message came back intact, 1 otherwise.
//
// Plain JavaScript with no dependencies: it runs with `node` inside a pod namespace.
import net from 'node:net';
import dgram from 'node:dgram';

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

function fill(canary, size, seq) {
  // "<canary> #<seq> " repeated: every message holds at least one whole canary.
  const unit = Buffer.from(`${canary} #${seq} `);
  const n = Math.max(size, unit.length);
  const b = Buffer.alloc(n);
  for (let off = 0; off < n; off += unit.length) unit.copy(b, off, 0, Math.min(unit.length, n - off));
  return b;
}

function server(o) {
  const port = Number(o.port);
  const host = o.bind ?? '0.0.0.0';
  const idle = o['idle-exit-ms'] === undefined ? 0 : Number(o['idle-exit-ms']);
  let timer;
  const touch = () => {
    if (idle <= 0) return;
    clearTimeout(timer);
    timer = setTimeout(() => process.exit(0), idle);
  };
  touch();
  const tcp = net.createServer((sock) => {
    sock.on('data', (d) => {
      touch();
      sock.write(d);
    });
    sock.on('error', () => undefined);
  });
  tcp.listen(port, host);
  // --bind :: serves both families (IPv4 peers arrive as ::ffff:a.b.c.d); a udp4 socket cannot bind it.
  const udp = dgram.createSocket(net.isIPv6(host) ? { type: 'udp6', ipv6Only: false } : 'udp4');
  udp.on('message', (msg, rinfo) => {
    touch();
    udp.send(msg, rinfo.port, rinfo.address);
  });
  udp.bind(port, host);
  let ready = 0;
  const up = () => {
    if (++ready === 2) process.stdout.write(`${JSON.stringify({ listening: port })}\n`);
  };
  tcp.on('listening', up);
  udp.on('listening', up);
  for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => process.exit(0));
}

function finish(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(result.ok ? 0 : 1);
}

function tcpClient(o, msgs, timeoutMs, t0) {
  const expected = Buffer.concat(msgs);
  const got = [];
  let gotLen = 0;
  const sock = net.connect({ host: o.host, port: Number(o.port) });
  const timer = setTimeout(() => {
    sock.destroy();
    finish({
      ok: false,
      proto: 'tcp',
      sent: msgs.length,
      echoed: countWhole(got, msgs),
      bytes: gotLen,
      ms: Date.now() - t0,
      error: 'timeout',
    });
  }, timeoutMs);
  sock.on('connect', () => {
    for (const m of msgs) sock.write(m);
  });
  sock.on('data', (d) => {
    got.push(d);
    gotLen += d.length;
    if (gotLen >= expected.length) {
      clearTimeout(timer);
      sock.end();
      const intact = Buffer.concat(got).subarray(0, expected.length).equals(expected);
      finish({
        ok: intact,
        proto: 'tcp',
        sent: msgs.length,
        echoed: intact ? msgs.length : 0,
        bytes: gotLen,
        ms: Date.now() - t0,
        ...(intact ? {} : { error: 'echo differs' }),
      });
    }
  });
  sock.on('error', (e) => {
    clearTimeout(timer);
    finish({
      ok: false,
      proto: 'tcp',
      sent: msgs.length,
      echoed: 0,
      bytes: gotLen,
      ms: Date.now() - t0,
      error: e.code ?? e.message,
    });
  });
}

function countWhole(chunks, msgs) {
  const all = Buffer.concat(chunks);
  let off = 0;
  let n = 0;
  for (const m of msgs) {
    if (off + m.length > all.length || !all.subarray(off, off + m.length).equals(m)) break;
    off += m.length;
    n++;
  }
  return n;
}

function udpClient(o, msgs, timeoutMs, t0) {
  const sock = dgram.createSocket(net.isIPv6(o.host) ? 'udp6' : 'udp4');
  const pending = new Map(msgs.map((m, i) => [i, m]));
  let bytes = 0;
  const sendPending = () => {
    for (const m of pending.values()) sock.send(m, Number(o.port), o.host);
  };
  // UDP may lose a datagram (e.g. the first one while ARP resolves): resend what is missing.
  const resend = setInterval(sendPending, 200);
  const timer = setTimeout(() => {
    clearInterval(resend);
    sock.close();
    finish({
      ok: false,
      proto: 'udp',
      sent: msgs.length,
      echoed: msgs.length - pending.size,
      bytes,
      ms: Date.now() - t0,
      error: 'timeout',
    });
  }, timeoutMs);
  sock.on('message', (d) => {
    for (const [i, m] of pending) {
      if (m.equals(d)) {
        pending.delete(i);
        bytes += d.length;
        break;
      }
    }
    if (pending.size === 0) {
      clearInterval(resend);
      clearTimeout(timer);
      sock.close();
      finish({ ok: true, proto: 'udp', sent: msgs.length, echoed: msgs.length, bytes, ms: Date.now() - t0 });
    }
  });
  sock.on('error', (e) => {
    clearInterval(resend);
    clearTimeout(timer);
    finish({
      ok: false,
      proto: 'udp',
      sent: msgs.length,
      echoed: msgs.length - pending.size,
      bytes,
      ms: Date.now() - t0,
      error: e.code ?? e.message,
    });
  });
  sock.bind(0, sendPending);
}

function client(o) {
  if (!o.canary) throw new Error('--canary is required');
  const count = Number(o.count ?? 3);
  const size = Number(o.size ?? 200);
  const timeoutMs = Number(o['timeout-ms'] ?? 5000);
  const msgs = Array.from({ length: count }, (_, i) => fill(o.canary, size, i));
  const t0 = Date.now();
  if (o.proto === 'tcp') tcpClient(o, msgs, timeoutMs, t0);
  else if (o.proto === 'udp') udpClient(o, msgs, timeoutMs, t0);
  else throw new Error(`--proto must be tcp or udp, got ${o.proto}`);
}

const opts = parseArgs(process.argv.slice(2));
if (opts.cmd === 'server') server(opts);
else if (opts.cmd === 'client') client(opts);
else {
  process.stderr.write('usage: canary.mjs server --port P | client --proto tcp|udp --host H --port P --canary S\n');
  process.exit(2);
}
