// Figures as the benchmark reports them: every one a min / median / max over interleaved
// repetitions, next to its reference from the same run and the ratio taken pair by pair
// (symroute ÷ reference, so lower is better everywhere). Goals are judged on the median.

export interface Spread {
  readonly min: number;
  readonly median: number;
  readonly max: number;
  readonly n: number;
}

export function spread(samples: readonly number[]): Spread {
  if (samples.length === 0) throw new Error('no samples');
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { min: sorted[0]!, median, max: sorted.at(-1)!, n: sorted.length };
}

/** Nearest-rank percentile (p99 of 30 samples is the largest). */
export function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export interface Goal {
  /** What is compared: the ratio, or symroute's own figure. */
  readonly on: 'ratio' | 'symroute';
  readonly atMost: number;
  /** As the issue states it. */
  readonly text: string;
}

export interface Figure {
  readonly section: string;
  readonly name: string;
  readonly unit: string;
  readonly symroute: Spread;
  readonly reference?: { readonly name: string; readonly figure: Spread };
  readonly ratio?: Spread;
  readonly goal?: Goal;
  readonly verdict?: 'PASS' | 'MISS';
}

export class Figures {
  readonly all: Figure[] = [];

  add(figure: Omit<Figure, 'verdict'>): Figure {
    const judged = figure.goal ? { ...figure, verdict: judge(figure) } : figure;
    this.all.push(judged);
    console.log(formatLine(judged));
    return judged;
  }
}

function judge(figure: Omit<Figure, 'verdict'>): 'PASS' | 'MISS' {
  const goal = figure.goal!;
  const value = goal.on === 'ratio' ? figure.ratio?.median : figure.symroute.median;
  return value !== undefined && value <= goal.atMost ? 'PASS' : 'MISS';
}

/** Three significant digits, small values kept readable. */
export function num(value: number): string {
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toPrecision(2);
}

export const formatSpread = (s: Spread, unit = ''): string =>
  `${num(s.min)} / **${num(s.median)}** / ${num(s.max)}${unit ? ` ${unit}` : ''}`;

function formatLine(f: Figure): string {
  const plain = (s: Spread) => `${num(s.min)}/${num(s.median)}/${num(s.max)}`;
  const parts = [`${f.section} · ${f.name}: ${plain(f.symroute)} ${f.unit}`];
  if (f.reference) parts.push(`vs ${f.reference.name} ${plain(f.reference.figure)} ${f.unit}`);
  if (f.ratio) parts.push(`ratio ${plain(f.ratio)}×`);
  if (f.goal) parts.push(`goal ${f.goal.text}: ${f.verdict}`);
  return parts.join('  ');
}

/** The figures as a Markdown table (min / median / max; median in bold). */
export function markdownTable(figures: readonly Figure[]): string {
  const rows = [
    '| figure | symroute (min / **median** / max) | reference (min / **median** / max) | ratio (per pair) | goal | |',
    '|---|---|---|---|---|---|',
  ];
  let section = '';
  for (const f of figures) {
    if (f.section !== section) {
      section = f.section;
      rows.push(`| **${section}** | | | | | |`);
    }
    rows.push(
      [
        '',
        f.name,
        formatSpread(f.symroute, f.unit),
        f.reference ? `${f.reference.name}: ${formatSpread(f.reference.figure, f.unit)}` : '',
        f.ratio ? `${formatSpread(f.ratio)}×` : '',
        f.goal?.text ?? '',
        f.verdict ?? '',
        '',
      ]
        .join(' | ')
        .trim(),
    );
  }
  return rows.join('\n');
}
