/** Result files on disk, and the generated summary and charts next to them. */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { latencyChart, throughputChart } from './charts.js';
import { latestPerBenchmark, renderSummary, type Source } from './summary.js';
import { RESULT_SCHEMA, type BenchResult } from './types.js';

/**
 * JSON with two-space indentation, except that arrays of plain numbers stay on one line (the
 * latency samples would otherwise take one line each).
 */
export function formatResultJson(r: BenchResult): string {
  const text = JSON.stringify(r, null, 2);
  return `${text.replace(/\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]/g, (_m, inner: string) => `[${inner.replace(/\s+/g, '')}]`)}\n`;
}

/** `<date>-<commit>.json`, or with `-2`, `-3`, … when that name is taken (several runs a day). */
export function resultFileName(dir: string, startedAt: string, short: string): string {
  const base = `${startedAt.slice(0, 10)}-${short}`;
  let name = `${base}.json`;
  for (let k = 2; existsSync(join(dir, name)); k++) name = `${base}-${k}.json`;
  return name;
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

/** Writes a result file under `<benchDir>/results/`; returns its path. */
export async function writeResult(benchDir: string, r: BenchResult): Promise<string> {
  const dir = join(benchDir, 'results');
  await mkdir(dir, { recursive: true });
  const path = join(dir, resultFileName(dir, r.startedAt, r.commit.short));
  await writeAtomic(path, formatResultJson(r));
  return path;
}

/** Every readable result file of the current schema, named relative to `benchDir`. */
export async function loadSources(benchDir: string): Promise<Source[]> {
  const dir = join(benchDir, 'results');
  const files = existsSync(dir) ? (await readdir(dir)).filter((f) => f.endsWith('.json')).sort() : [];
  const out: Source[] = [];
  for (const f of files) {
    try {
      const r = JSON.parse(await readFile(join(dir, f), 'utf8')) as BenchResult;
      if (r.schema === RESULT_SCHEMA) out.push({ file: `results/${f}`, result: r });
    } catch {
      // not ours, or half-written: skipped
    }
  }
  return out;
}

/** Regenerates SUMMARY.md and the charts from every result file; returns the paths written. */
export async function writeReports(benchDir: string): Promise<string[]> {
  const sources = await loadSources(benchDir);
  const written: string[] = [];
  const summary = join(benchDir, 'SUMMARY.md');
  await writeAtomic(summary, renderSummary(sources));
  written.push(summary);
  const t = latestPerBenchmark(sources).throughput;
  if (t !== undefined) {
    for (const [name, svg] of [
      ['throughput.svg', throughputChart(t.result)],
      ['latency.svg', latencyChart(t.result)],
    ] as const) {
      if (svg === undefined) continue;
      await writeAtomic(join(benchDir, name), svg);
      written.push(join(benchDir, name));
    }
  }
  return written;
}
