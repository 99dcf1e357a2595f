/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4) for tests: every line
 * must be a HELP, a TYPE or a sample with a valid name, labels and value, and each sample must
 * belong to a family declared by a TYPE line before it.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: (-?\\d+))?$`);
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;

function parseValue(text: string, line: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`bad value in: ${line}`);
  return Number(text);
}

export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^# HELP (${NAME}) (.*)$`).exec(line))) {
      const f = families.get(m[1]) ?? { name: m[1], type: '', help: '', samples: [] };
      f.help = m[2];
      families.set(m[1], f);
    } else if ((m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line))) {
      const f = families.get(m[1]) ?? { name: m[1], type: '', help: '', samples: [] };
      if (f.type) throw new Error(`second TYPE for ${m[1]}`);
      f.type = m[2];
      families.set(m[1], f);
    } else if (line.startsWith('#')) {
      throw new Error(`unexpected comment: ${line}`);
    } else if ((m = SAMPLE.exec(line))) {
      const labels: Record<string, string> = {};
      if (m[2]) {
        LABEL.lastIndex = 0;
        while (LABEL.lastIndex < m[2].length) {
          const l = LABEL.exec(m[2]);
          if (!l) throw new Error(`bad labels in: ${line}`);
          labels[l[1]] = l[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
        }
      }
      const base = m[1].replace(/_(bucket|sum|count)$/, '');
      const family = families.get(m[1])?.type ? families.get(m[1]) : families.get(base);
      if (!family?.type) throw new Error(`sample before its TYPE: ${line}`);
      family.samples.push({ name: m[1], labels, value: parseValue(m[3], line) });
    } else {
      throw new Error(`not an exposition line: ${line}`);
    }
  }
  return families;
}

/** The value of one sample whose labels include `labels`. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}, family = name): number | undefined {
  const f = families.get(family);
  return f?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
