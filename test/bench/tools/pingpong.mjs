#!/usr/bin/env node
// Request/response latency over one TCP connection (TCP_NODELAY), for `npm run bench`.
//
//   pingpong.mjs server --port P
//       Echoes every TCP connection on port P until killed; prints {"event":"listening"} once ready.
//   pingpong.mjs client --host H --port P [--count N] [--warmup W] [--size BYTES] [--timeout-ms MS]
//       Opens one connection, sends W + N messages of SIZE bytes one at a time, waiting for the
//       whole echo before sending the next, and prints one JSON line:
//       {"ok":true,"size":S,"count":N,"rttUs":[...]} with the N round trips after the warm-up,
//       in whole microseconds. Exit 0 on success, 1 otherwise.
//
// Plain JavaScript with no dependencies: it runs with `node` inside a pod namespace. Both ends
// add Node's event-loop overhead (tens of microseconds) to every round trip, the same in every
// variant, so compare variants by their difference or ratio measured in the same run.
import net from 'node:net';

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

function server(o) {
  const srv = net.createServer((sock) => {
    sock.setNoDelay(true);
    sock.on('data', (d) => sock.write(d));
    sock.on('error', () => undefined);
  });
  srv.listen(Number(o.port), '0.0.0.0', () =>
    process.stdout.write(`${JSON.stringify({ event: 'listening', port: Number(o.port) })}\n`),
  );
}

function client(o) {
  const count = Number(o.count ?? 1000);
  const warmup = Number(o.warmup ?? 100);
  const size = Number(o.size ?? 64);
  const timeoutMs = Number(o['timeout-ms'] ?? 20000);
  const payload = Buffer.alloc(size, 0x5a);
  const rtt = [];
  const finish = (ok, error) => {
    process.stdout.write(
      `${JSON.stringify({ ok, size, count: rtt.length, rttUs: rtt, ...(error ? { error } : {}) })}\n`,
    );
    process.exit(ok ? 0 : 1);
  };
  const timer = setTimeout(
    () => finish(false, `timed out after ${timeoutMs} ms with ${rtt.length} of ${count} round trips`),
    timeoutMs,
  );
  const sock = net.connect({ host: o.host, port: Number(o.port), noDelay: true });
  let sent = 0;
  let got = 0;
  let t0 = 0n;
  const send = () => {
    got = 0;
    t0 = process.hrtime.bigint();
    sock.write(payload);
  };
  sock.on('connect', send);
  sock.on('data', (d) => {
    got += d.length;
    if (got < size) return;
    const us = Number(process.hrtime.bigint() - t0) / 1000;
    sent++;
    if (sent > warmup) rtt.push(Math.round(us));
    if (sent >= warmup + count) {
      clearTimeout(timer);
      sock.destroy();
      finish(true);
      return;
    }
    send();
  });
  sock.on('error', (e) => finish(false, String(e)));
}

const o = parseArgs(process.argv.slice(2));
if (o.cmd === 'server') server(o);
else if (o.cmd === 'client') client(o);
else {
  process.stderr.write(
    'usage: pingpong.mjs server --port P | client --host H --port P [--count N] [--warmup W] [--size B]\n',
  );
  process.exit(2);
}
