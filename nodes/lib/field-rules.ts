/**
 * What every text field of the node dialogs accepts, and what a blank or missing value means: one
 * table read by the runtime (settings.ts) and, unchanged, by the editor's validators (the compiled
 * file is served to the editor by editor-script.ts). So this module imports nothing and uses
 * nothing but plain JavaScript.
 */

export interface NumberRule {
  kind: 'int' | 'number';
  /** How the error message names the field. */
  label: string;
  min?: number;
  max?: number;
  /** Exclusive lower bound. */
  above?: number;
  /** What a blank or missing value reads as; without one it stays unset (auto / the engine's own). */
  default?: number;
  /**
   * An upper bound that only protects the host (memory, a timer's range), said with its reason:
   * "<label> must be at most <max><unit> (<why>), got <value><unit>". `perUnit` converts the
   * field's unit to the bound's (seconds to ms: 1000).
   */
  ceiling?: Ceiling;
}

export interface Ceiling {
  max: number;
  why: string;
  unit?: string;
  perUnit?: number;
}

// Beyond these a value only exhausts memory or overflows a timer; refusing it at deploy shows the
// reason on the node instead of a crash or a stall later.
/** Messages a queue may hold (device queue, infer node's waiting and in-flight bounds): each holds its input. */
const QUEUE_CEILING: Ceiling = { max: 65_536, why: 'each queued message holds its input tensor in memory' };
/** Items in one batch (graph max batch, engine batching, batch node): a batch is one input tensor. */
const BATCH_CEILING: Ceiling = { max: 4_096, why: 'a batch is one tensor, and the engine refuses tensors over 1 GiB' };
/** Model input width or height: one side of sharp's default pixel limit (a 16383 x 16383 float RGB input is 3 GiB already). */
const IMAGE_SIDE_CEILING: Ceiling = { max: 0x3fff, why: "one side of sharp's default input pixel limit" };
/** Source image pixels: sharp's own default (limitInputPixels, 0x3FFF x 0x3FFF). */
const IMAGE_PIXELS_CEILING: Ceiling = { max: 0x3fff * 0x3fff, why: "sharp's default input pixel limit" };
/** Node's timers hold 32-bit milliseconds: a longer delay fires at once instead (with a TimeoutOverflowWarning). */
const timerCeiling = (perUnit = 1): Ceiling => ({ max: 2_147_483_647, why: 'about 24.8 days, the longest timer Node.js keeps', unit: ' ms', perUnit });

/** One number, or one per channel separated by commas. */
export interface ListRule {
  kind: 'numbers';
  label: string;
  nonZero?: boolean;
}

export type FieldRule = NumberRule | ListRule;

/** A rule between fields: the message for `field` when the values together are wrong. */
export interface RelationRule {
  field: string;
  uses: string[];
  check(values: Record<string, unknown>): string | undefined;
}

export type NodeTypeName = 'ncs2-device' | 'ncs2-graph' | 'ncs2-infer' | 'ncs2-batch' | 'ncs2-stats' | 'ncs2-thermal-guard';

const positiveInt = (label: string, def?: number, ceiling?: Ceiling): NumberRule => ({ kind: 'int', label, min: 1, default: def, ceiling });
const fraction = (label: string, def?: number): NumberRule => ({ kind: 'number', label, min: 0, max: 1, default: def });
/** A device temperature limit: the guard compares it with what sensors report. */
const temperature = (label: string, def: number): NumberRule => ({ kind: 'number', label, min: 0, max: 150, default: def });

export const FIELD_RULES: Record<NodeTypeName, Record<string, FieldRule>> = {
  'ncs2-device': {
    workers: positiveInt('workers'),
    threadsPerWorker: positiveInt('threads per worker'),
    maxInFlight: positiveInt('requests in flight'),
    queueCapacity: positiveInt('queue capacity', 256, QUEUE_CEILING),
  },
  'ncs2-graph': {
    topK: positiveInt('top-k', 5),
    scoreThreshold: fraction('score threshold', 0.25),
    iouThreshold: fraction('IoU threshold', 0.45),
    maxDetections: positiveInt('max detections', 100),
    dbThreshold: fraction('text threshold'),
    dbBoxThreshold: fraction('box threshold'),
    dbUnclipRatio: { kind: 'number', label: 'unclip ratio', above: 0 },
    width: positiveInt('width', undefined, IMAGE_SIDE_CEILING),
    height: positiveInt('height', undefined, IMAGE_SIDE_CEILING),
    scale: { kind: 'number', label: 'scale' },
    mean: { kind: 'numbers', label: 'mean' },
    std: { kind: 'numbers', label: 'std', nonZero: true },
    padValue: { kind: 'int', label: 'pad value', min: 0, max: 255, default: 0 },
    maxInputPixels: positiveInt('max input pixels', 25000000, IMAGE_PIXELS_CEILING),
    maxBatch: positiveInt('max batch', 64, BATCH_CEILING),
    batchMaxSize: positiveInt('max batch size', 32, BATCH_CEILING),
    batchTargetMs: { kind: 'number', label: 'target latency', above: 0, default: 2, ceiling: timerCeiling() },
  },
  'ncs2-infer': {
    maxInFlight: positiveInt('in flight', 64, QUEUE_CEILING),
    maxWaiting: { kind: 'int', label: 'waiting', min: 0, default: 256, ceiling: QUEUE_CEILING },
    cropPadding: fraction('crop padding', 0),
  },
  'ncs2-batch': {
    count: positiveInt('count', 8, BATCH_CEILING),
    // Blank: no time limit in count mode, 50 ms in the others (settings.ts).
    timeout: { kind: 'number', label: 'max wait', min: 0, ceiling: timerCeiling() },
    maxItems: positiveInt('max items', 64, BATCH_CEILING),
  },
  'ncs2-stats': {
    interval: { kind: 'number', label: 'interval', min: 0, default: 5, ceiling: timerCeiling(1000) },
  },
  'ncs2-thermal-guard': {
    targetC: temperature('target temperature', 70),
    criticalC: temperature('critical temperature', 85),
    hysteresisC: { kind: 'number', label: 'hysteresis', min: 0, default: 5 },
    interval: { kind: 'number', label: 'reading interval', min: 0, default: 10, ceiling: timerCeiling(1000) },
  },
};

/**
 * Fields of a device pool's members (nodes/lib/pool.ts) that the node's own properties do not
 * have; a member's workers, threads and requests in flight follow the ncs2-device rules.
 */
export const MEMBER_RULES: Record<string, FieldRule> = {
  count: { kind: 'int', label: 'simulated sticks', min: 1, max: 16, default: 1 },
};

/** The rule of a pool member's field, if it has one. */
export function memberRule(field: string): FieldRule | undefined {
  return MEMBER_RULES[field] ?? FIELD_RULES['ncs2-device'][field];
}

/** Blank, missing or "auto": the field's default applies. */
export function isBlank(value: unknown): boolean {
  if (value === undefined || value === null) return true;
  if (typeof value !== 'string') return false;
  const s = value.trim();
  return s === '' || s.toLowerCase() === 'auto';
}

/** A number, or a fraction such as "1/255" (how scales are usually written); NaN if neither. */
function toNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  const s = String(value).trim();
  const parts = /^(-?[\d.]+(?:e-?\d+)?)\s*\/\s*([\d.]+(?:e-?\d+)?)$/i.exec(s);
  if (parts) return Number(parts[1]) / Number(parts[2]);
  return s === '' ? NaN : Number(s);
}

/** "an integer >= 1", "a number from 0 to 1", ... : what the rule accepts, for messages. */
export function expectation(rule: FieldRule): string {
  if (rule.kind === 'numbers') return `one number or one per channel separated by commas${rule.nonZero ? ', none of them 0' : ''}`;
  const what = rule.kind === 'int' ? 'an integer' : 'a number';
  if (rule.min !== undefined && rule.max !== undefined) return `${what} from ${rule.min} to ${rule.max}`;
  if (rule.above !== undefined) return `${what} > ${rule.above}`;
  if (rule.min !== undefined) return `${what} >= ${rule.min}`;
  return `${what} (or a fraction like 1/255)`;
}

export interface FieldReading {
  value?: number | number[];
  /** Set when the value is wrong: "<label> must be <what it accepts> or blank, got <value>". */
  error?: string;
}

/** Reads one field's value by its rule: blank gives the default (or nothing), anything else is checked. */
export function readField(rule: FieldRule, value: unknown): FieldReading {
  if (isBlank(value)) return rule.kind === 'numbers' ? {} : { value: rule.default };
  const wrong = { error: `${rule.label} must be ${expectation(rule)} or blank, got ${JSON.stringify(value)}` };
  if (rule.kind === 'numbers') {
    const numbers = String(value).split(/[\s,;]+/).filter(Boolean).map(Number);
    if (numbers.some((n) => !Number.isFinite(n) || (rule.nonZero && n === 0))) return wrong;
    return { value: numbers.length === 1 ? numbers[0] : numbers };
  }
  const n = toNumber(value);
  if (!Number.isFinite(n) || (rule.kind === 'int' && !Number.isInteger(n))) return wrong;
  if ((rule.min !== undefined && n < rule.min) || (rule.max !== undefined && n > rule.max) || (rule.above !== undefined && n <= rule.above)) return wrong;
  const c = rule.ceiling;
  if (c && n * (c.perUnit ?? 1) > c.max) return { error: `${rule.label} must be at most ${c.max}${c.unit ?? ''} (${c.why}), got ${n * (c.perUnit ?? 1)}${c.unit ?? ''}` };
  return { value: n };
}

/** A field's number after its rule, or its default when blank (NaN-free: callers check `error` first). */
function numberOf(type: NodeTypeName, field: string, values: Record<string, unknown>): number | undefined {
  const reading = readField(FIELD_RULES[type][field], values[field]);
  return reading.error === undefined ? (reading.value as number | undefined) : undefined;
}

export const RELATION_RULES: Record<NodeTypeName, RelationRule[]> = {
  'ncs2-device': [],
  'ncs2-graph': [
    {
      field: 'calibration',
      uses: ['optimize', 'calibration'],
      check: (v) =>
        v.optimize === 'int8' && isBlank(v.calibration) ? 'optimize int8 needs calibration data: a folder of sample images (or a .npy file) like the ones the flow will see' : undefined,
    },
  ],
  'ncs2-infer': [],
  'ncs2-batch': [
    {
      field: 'count',
      uses: ['count', 'maxItems'],
      check: (v) => {
        const count = numberOf('ncs2-batch', 'count', v);
        const maxItems = numberOf('ncs2-batch', 'maxItems', v);
        return count !== undefined && maxItems !== undefined && count > maxItems ? `count (${count}) must not exceed max items (${maxItems})` : undefined;
      },
    },
    {
      field: 'timeout',
      uses: ['mode', 'timeout'],
      // Without a time limit only a full batch is sent: time and adaptive batches must end on their own.
      check: (v) =>
        v.mode !== undefined && v.mode !== 'count' && numberOf('ncs2-batch', 'timeout', v) === 0
          ? `max wait must be > 0 ms in ${String(v.mode)} mode, or the last items of a burst would wait forever`
          : undefined,
    },
  ],
  'ncs2-stats': [],
  'ncs2-thermal-guard': [
    {
      field: 'criticalC',
      uses: ['targetC', 'criticalC'],
      check: (v) => {
        const target = numberOf('ncs2-thermal-guard', 'targetC', v);
        const critical = numberOf('ncs2-thermal-guard', 'criticalC', v);
        return target !== undefined && critical !== undefined && critical <= target ? `critical temperature (${critical} C) must be above the target (${target} C)` : undefined;
      },
    },
  ],
};

/**
 * Everything wrong with one field of a node: its own rule, then the relations it is flagged by.
 * `values` holds the node's properties as saved (or as the dialog has them now).
 */
export function fieldError(type: NodeTypeName, field: string, values: Record<string, unknown>): string | undefined {
  const rule = FIELD_RULES[type][field];
  const own = rule ? readField(rule, values[field]).error : undefined;
  if (own) return own;
  for (const relation of RELATION_RULES[type]) {
    if (relation.field !== field) continue;
    const error = relation.check(values);
    if (error) return error;
  }
  return undefined;
}
