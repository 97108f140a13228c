// Docker CLI output conventions: human sizes (decimal, 3 significant digits),
// "2 minutes ago", column tables and --format templates ({{.Field}}, {{json .}}, table ...).

export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  let v = bytes;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(3))}${units[i]}`;
}

export function humanDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const m = Math.round(s / 60);
  if (m === 1) return 'About a minute';
  if (m < 60) return `${m} minutes`;
  const h = Math.round(s / 3600);
  if (h === 1) return 'About an hour';
  if (h < 48) return `${h} hours`;
  if (h < 24 * 7 * 2) return `${Math.floor(h / 24)} days`;
  if (h < 24 * 30 * 2) return `${Math.floor(h / 24 / 7)} weeks`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24 / 30)} months`;
  return `${Math.floor(h / 24 / 365)} years`;
}

export function since(iso: string | undefined): string {
  if (!iso) return 'N/A';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return 'N/A';
  return `${humanDuration(Date.now() - t)} ago`;
}

/** Columns separated by at least 3 spaces, like Docker's tabwriter output. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]! + 3)))
      .join('')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/**
 * A small subset of Go templates as the Docker CLI uses them:
 * `{{.Field}}`, `{{.A.B}}`, `{{json .}}`, `{{json .Field}}`, `\t`; a leading `table ` prints a header row.
 */
export function renderTemplate(tpl: string, obj: Record<string, unknown>): string {
  return tpl
    .replace(/\\t/g, '\t')
    .replace(/\\n/g, '\n')
    .replace(/\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}/g, (_m, json: string | undefined, field: string) => {
      let v: unknown = obj;
      for (const part of field.split('.').filter(Boolean)) v = (v as Record<string, unknown> | undefined)?.[part];
      if (json) return JSON.stringify(v ?? null);
      if (v === undefined || v === null) return '<no value>';
      if (typeof v === 'object') return JSON.stringify(v);
      return String(v);
    });
}

export function formatRows(format: string, rows: Record<string, unknown>[], headers: Record<string, string>): string {
  if (format === 'json') return rows.map((r) => JSON.stringify(r)).join('\n');
  if (format.startsWith('table')) {
    const tpl = format.slice('table'.length).trim();
    const fields = [...tpl.matchAll(/\{\{\s*\.([A-Za-z0-9_]+)\s*\}\}/g)].map((m) => m[1]!);
    const out = rows.map((r) => renderTemplate(tpl, r).split('\t'));
    return table(fields.map((f) => headers[f] ?? f.toUpperCase()), out);
  }
  return rows.map((r) => renderTemplate(format, r)).join('\n');
}
