/**
 * The readable page of an audit report (Markdown). Rendered only from the signed report, and
 * deterministically, so `sealctl audit verify` can re-render it and catch an edited page.
 */
import { formatDuration } from './policy.js';
import { escapeMarkdown } from '../../common/text.js';
import type { AuditReport } from './report.js';
import type { AuditPqEnd } from './pq.js';

function cell(v: string | number | boolean | undefined): string {
  if (v === undefined) return '–';
  // Values come from other nodes' status: no Markdown, HTML or terminal control survives.
  return escapeMarkdown(String(v));
}

/** A duration in seconds, short (`42s`, `17m`, `5h`, `12d`). */
export function age(seconds: number | undefined): string {
  if (seconds === undefined) return '–';
  if (seconds < 0) return `${seconds}s`;
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

/** Bytes, short (`512`, `1.5k`, `3.2M`, `4.0G`). */
export function bytes(n: number | undefined): string {
  if (n === undefined) return '–';
  if (n < 1000) return String(n);
  for (const [u, d] of [
    ['G', 1e9],
    ['M', 1e6],
    ['k', 1e3],
  ] as const)
    if (n >= d) return `${(n / d).toFixed(1)}${u}`;
  return String(n);
}

function pqEnd(e: AuditPqEnd): string {
  if (e.confirmed)
    return cell(
      `${e.node}: ${e.protection ?? '–'}, ${e.phase ?? '–'}, ${e.role ?? '–'}, secret ${age(e.secretAgeSeconds)} old (${e.lastRenewal ?? '–'})`,
    );
  return `${cell(e.node)}: **not confirmed**: ${cell(e.problem)}`;
}

/** The post-quantum section, only in reports that carry the evidence (older pages render as they did). */
function renderPq(r: AuditReport, L: string[]): void {
  if (!r.pairs.some((p) => p.postQuantum !== undefined)) return;
  L.push('', '## Post-quantum pair secret', '');
  L.push('| pair | confirmed (both ends) | a | b |');
  L.push('| --- | --- | --- | --- |');
  for (const p of r.pairs) {
    const q = p.postQuantum;
    if (q === undefined) continue;
    const both = q.confirmed ? 'yes' : `**no**${q.problems.length > 0 ? ` (${cell(q.problems.join('; '))})` : ''}`;
    L.push(`| ${cell(`${p.a} ↔ ${p.b}`)} | ${both} | ${pqEnd(q.a)} | ${pqEnd(q.b)} |`);
  }
}

/** Renders the Markdown page. */
export function renderMarkdown(r: AuditReport): string {
  const L: string[] = [];
  const verdict = r.verdict === 'compliant' ? 'COMPLIANT' : 'NON-COMPLIANT';
  L.push(`# sealnet compliance audit: ${verdict}`, '');
  L.push(
    `- **Verdict:** ${verdict}${r.complete ? '' : ' — evidence is INCOMPLETE (partial results), so the cluster cannot be shown compliant'}`,
  );
  L.push(`- **Generated:** ${r.generatedAt} by ${r.tool.name} ${r.tool.version}`);
  L.push(
    `- **Scope:** ${r.summary.nodes} nodes, ${r.summary.pairs} pairs (store: ${r.scope.store}${r.scope.onlyNodes === undefined ? '' : `; pairs involving ${r.scope.onlyNodes.join(', ')}`})`,
  );
  L.push(
    `- **Pairs:** ${r.summary.compliantPairs} compliant, ${r.summary.nonCompliantPairs} not compliant; ${r.summary.violations} violations`,
  );
  if (r.summary.postQuantumPairs !== undefined)
    L.push(
      `- **Post-quantum:** ${r.summary.postQuantumPairs} pairs protected by a confirmed ML-KEM-768 secret (both ends agree), ${cell(r.summary.nonPostQuantumPairs)} not`,
    );
  L.push(`- **Policy:** ${cell(r.policy.name)} — ${cell(r.policy.description)}`);
  L.push(
    `  allowed algorithms: ${r.policy.allowedAlgorithms.join(', ')}; maximum key age ${formatDuration(r.policy.maxKeyAgeSeconds)}; fail-closed ${r.policy.requireFailClosed ? 'required' : 'not required'}; node-to-node encryption ${r.policy.requireNodeToNodeEncryption ? 'required' : 'not required'}; every pair encrypted ${r.policy.requireAllPairsEncrypted ? 'required' : 'not required'}; active probe ${r.policy.requireProbe ? 'required' : 'not required'}; status at most ${formatDuration(r.policy.maxStatusAgeSeconds)} old${r.policy.requirePostQuantum === undefined ? '' : `; post-quantum pair secret ${r.policy.requirePostQuantum ? 'required' : 'not required'}`}`,
  );
  L.push(
    `- **Evidence:** ${cell(r.evidence.status)}; the oldest report was ${age(r.evidence.maxCounterAgeSeconds)} old`,
  );
  L.push(`- **Active probe:** ${cell(r.evidence.probe.note)}`, '');

  L.push('## Pairs', '');
  L.push(
    '| pair | state | compliant | mode / algorithm | keys (a / b) | key age (a / b) | last handshake (a→b / b→a) | bytes a rx/tx · b rx/tx | probe | why not compliant |',
  );
  L.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const p of r.pairs) {
    const probe =
      p.probe.ran === false
        ? 'not run'
        : 'encryptedOnWire' in p.probe && p.probe.encryptedOnWire
          ? `encrypted on the wire (${p.probe.tunnelPackets} tunnel pkts, 0 plaintext)`
          : 'encryptedOnWire' in p.probe
            ? `FAILED (${p.probe.plaintextPackets} plaintext, ${p.probe.canaryLeaks} canary)`
            : 'not run';
    L.push(
      `| ${cell(`${p.a} ↔ ${p.b}`)} | ${p.state}${p.partial ? ' (partial)' : ''} | ${p.compliant ? 'yes' : '**no**'} | ${cell(p.mode)} / ${cell(p.algorithm)} | ${cell(p.keys.a)} / ${cell(p.keys.b)} | ${age(p.keyAgeSeconds.a)} / ${age(p.keyAgeSeconds.b)} | ${age(p.handshakeAgeSeconds.ab)} / ${age(p.handshakeAgeSeconds.ba)} | ${bytes(p.bytes.a.rx)}/${bytes(p.bytes.a.tx)} · ${bytes(p.bytes.b.rx)}/${bytes(p.bytes.b.tx)} | ${cell(probe)} | ${cell(p.violations.map((v) => `${v.code}: ${v.message}`).join('; ') || '–')} |`,
    );
  }
  renderPq(r, L);
  L.push('', '## Nodes', '');
  L.push(
    '| node | status | algorithm | key | key age | fail-closed | node-to-node | fail-open packets | BPF drops | violations |',
  );
  L.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const n of r.nodes) {
    const drops =
      n.bpfDrops === undefined
        ? '–'
        : Object.entries(n.bpfDrops)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ') || '0';
    const health = n.health === 'ok' ? `ok (${age(n.statusAgeSeconds)} old)` : `**${n.health}**`;
    L.push(
      `| ${cell(n.name)} | ${health} | ${cell(n.algorithm)} | ${cell(n.keyFingerprint)} | ${age(n.keyAgeSeconds)} | ${n.failClosed === undefined ? '–' : n.failClosed ? 'on' : '**off**'} | ${n.nodeToNode === undefined ? '–' : n.nodeToNode ? 'on' : 'off'} | ${cell(n.failOpenPackets)} | ${cell(drops)} | ${cell(n.violations.join(', ') || '–')} |`,
    );
  }
  L.push('', '## Violations', '');
  if (r.violations.length === 0) L.push('None.');
  for (const v of r.violations) L.push(`- \`${v.code}\` **${cell(v.subject)}**: ${cell(v.message)}`);
  L.push('', '## Signature', '');
  L.push(`The JSON report beside this page is signed with Ed25519 (${r.signature.publicKeyFingerprint}).`);
  L.push(
    'This page is rendered from it; check both with `sealctl audit verify report.json --public-key <signer.pub>`.',
    '',
  );
  return `${L.join('\n')}`;
}
