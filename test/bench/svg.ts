/**
 * Hand-written SVG bar charts for the README: grouped bars at the median with a min–max
 * whisker, one or more panels (each with its own y scale) under a shared title and legend.
 * No chart library; the output is small, stable text that diffs well.
 */
import { fmt, type Spread } from './stats.js';

/** A series (one bar per group). */
export interface BarSeries {
  readonly id: string;
  readonly label: string;
  readonly color: string;
}

/** A group of bars. */
export interface BarGroup {
  readonly label: string;
  /** A second, smaller line under the group label (e.g. the plaintext baseline). */
  readonly note?: string;
  readonly values: Readonly<Record<string, Spread | undefined>>;
}

/** A panel: groups of bars on one y scale. */
export interface BarPanel {
  readonly title?: string;
  readonly unit: string;
  readonly groups: readonly BarGroup[];
}

/** Options of {@link barChart}. */
export interface ChartOptions {
  readonly title: string;
  readonly subtitle: string;
  readonly series: readonly BarSeries[];
  readonly panels: readonly BarPanel[];
  readonly width?: number;
  readonly height?: number;
}

/** Escapes text for SVG content and attributes. */
export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The smallest "round" number (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k) at or above `x`: the axis maximum. */
export function niceCeil(x: number): number {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= x * (1 - 1e-12)) return m * p;
  return 10 * p;
}

interface Box {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
}

function panel(p: BarPanel, series: readonly BarSeries[], box: Box): string[] {
  const out: string[] = [];
  const left = box.x + 56;
  const right = box.x + box.w - 8;
  const top = box.y + (p.title === undefined ? 8 : 24);
  const hasNotes = p.groups.some((g) => g.note !== undefined);
  const bottom = box.y + box.h - (hasNotes ? 40 : 26);
  const plotW = right - left;
  const plotH = bottom - top;
  const all = p.groups.flatMap((g) => series.map((s) => g.values[s.id]?.max ?? 0));
  const yMax = niceCeil(Math.max(0, ...all) * 1.1);
  const y = (v: number): number => bottom - (v / yMax) * plotH;
  if (p.title !== undefined)
    out.push(`<text x="${left}" y="${box.y + 14}" font-weight="bold">${xmlEscape(p.title)}</text>`);
  for (let k = 0; k <= 5; k++) {
    const v = (yMax * k) / 5;
    const yy = y(v).toFixed(1);
    out.push(`<line x1="${left}" x2="${right}" y1="${yy}" y2="${yy}" stroke="${k === 0 ? '#333333' : '#e3e3e3'}"/>`);
    out.push(
      `<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" fill="#555555">${xmlEscape(fmt(v))}</text>`,
    );
  }
  out.push(
    `<text transform="translate(${box.x + 12} ${(top + plotH / 2).toFixed(1)}) rotate(-90)" text-anchor="middle" fill="#555555">${xmlEscape(p.unit)}</text>`,
  );
  const gw = plotW / Math.max(1, p.groups.length);
  const bw = (gw * 0.8) / Math.max(1, series.length);
  p.groups.forEach((g, gi) => {
    const gx = left + gi * gw + gw * 0.1;
    series.forEach((s, si) => {
      const v = g.values[s.id];
      const x = gx + si * bw;
      const cx = (x + bw / 2).toFixed(1);
      if (v === undefined) {
        out.push(
          `<text x="${cx}" y="${(bottom - 4).toFixed(1)}" text-anchor="middle" font-size="10" fill="#b00000">n/a</text>`,
        );
        return;
      }
      const tip = `${s.label}, ${g.label}: median ${fmt(v.median)} ${p.unit} (min ${fmt(v.min)}, max ${fmt(v.max)}, n=${v.n})`;
      out.push(
        `<rect x="${(x + 1).toFixed(1)}" y="${y(v.median).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(bottom - y(v.median)).toFixed(1)}" fill="${s.color}"><title>${xmlEscape(tip)}</title></rect>`,
      );
      out.push(
        `<line x1="${cx}" x2="${cx}" y1="${y(v.max).toFixed(1)}" y2="${y(v.min).toFixed(1)}" stroke="#222222"/>`,
      );
      for (const w of [v.min, v.max])
        out.push(
          `<line x1="${(x + bw * 0.3).toFixed(1)}" x2="${(x + bw * 0.7).toFixed(1)}" y1="${y(w).toFixed(1)}" y2="${y(w).toFixed(1)}" stroke="#222222"/>`,
        );
      out.push(
        `<text x="${cx}" y="${(y(v.max) - 4).toFixed(1)}" text-anchor="middle" font-size="10">${xmlEscape(fmt(v.median))}</text>`,
      );
    });
    const lx = (left + gi * gw + gw / 2).toFixed(1);
    out.push(`<text x="${lx}" y="${bottom + 18}" text-anchor="middle">${xmlEscape(g.label)}</text>`);
    if (g.note !== undefined)
      out.push(
        `<text x="${lx}" y="${bottom + 33}" text-anchor="middle" font-size="10" fill="#555555">${xmlEscape(g.note)}</text>`,
      );
  });
  return out;
}

/** Renders panels side by side under one title, subtitle and legend. */
export function barChart(o: ChartOptions): string {
  const W = o.width ?? 800;
  const H = o.height ?? 400;
  const head = 76;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="16" y="22" font-size="16" font-weight="bold">${xmlEscape(o.title)}</text>`);
  out.push(`<text x="16" y="40" fill="#555555">${xmlEscape(o.subtitle)}</text>`);
  let lx = 16;
  for (const s of o.series) {
    out.push(`<rect x="${lx}" y="52" width="12" height="12" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 16}" y="62">${xmlEscape(s.label)}</text>`);
    lx += 16 + s.label.length * 6.6 + 18;
  }
  const pw = W / Math.max(1, o.panels.length);
  o.panels.forEach((p, i) => out.push(...panel(p, o.series, { x: i * pw, y: head, w: pw, h: H - head })));
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
