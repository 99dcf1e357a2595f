/** Linux CPU list syntax ("0-3,8,10-11"), as in sysfs and /proc/<pid>/status. */
export function parseCpuList(text: string): number[] {
  const out = new Set<number>();
  for (const part of text.trim().split(',')) {
    const p = part.trim();
    if (!p) continue;
    const m = /^(\d+)(?:-(\d+))?(?::(\d+))?$/.exec(p);
    if (!m) throw new RangeError(`not a CPU list: '${text.trim()}' (expected e.g. 0-3,8,10-11)`);
    const from = Number(m[1]);
    const to = m[2] !== undefined ? Number(m[2]) : from;
    const stride = m[3] !== undefined ? Math.max(1, Number(m[3])) : 1;
    for (let c = from; c <= to; c += stride) out.add(c);
  }
  return [...out].sort((a, b) => a - b);
}

export function formatCpuList(cpus: readonly number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(j > i ? `${sorted[i]}-${sorted[j]}` : String(sorted[i]));
    i = j + 1;
  }
  return parts.join(',');
}
