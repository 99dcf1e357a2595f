/**
 * Optimize-on-load with a disk cache: the optimized model is written once per (model bytes,
 * options, calibration data) and reused by every later load, redeploy and restart.
 *
 * The optimizer runs onnxruntime synchronously (type probes, calibration runs), so it runs in a
 * short-lived worker thread: on Node-RED's main thread an INT8 calibration would freeze every flow
 * and the editor for seconds.
 */
import { createHash } from 'crypto';
import { promises as fs } from 'fs';
import * as path from 'path';
import { runOneShotWorker } from '../../host/one-shot-worker';
import type { OptimizeOptions, OptimizeReport } from './optimize';
import { writeModelAtomic } from './write';

export interface CachedOptimizeOptions extends Omit<OptimizeOptions, 'calibration'> {
  /** INT8: a folder of images or a .npy file. */
  calibration?: string;
}

export interface CachedOptimizeResult {
  /** The optimized model file inside the cache folder. */
  modelPath: string;
  /** The optimizer's report from when the file was made. */
  report: OptimizeReport;
  /** True when the file was already in the cache. */
  cached: boolean;
  key: string;
}

/** Optimized models kept per cache folder; the least recently used beyond this are deleted. */
export const OPTIMIZE_CACHE_ENTRIES = 16;

const running = new Map<string, Promise<CachedOptimizeResult>>();

async function calibrationFingerprint(source: string | undefined): Promise<string> {
  if (!source) return '';
  const hash = createHash('sha256');
  const stat = await fs.stat(source);
  const files = stat.isDirectory() ? (await fs.readdir(source)).sort().map((f) => path.join(source, f)) : [source];
  for (const file of files) {
    const s = await fs.stat(file);
    if (!s.isFile()) continue;
    hash.update(path.basename(file)).update('\0').update(await fs.readFile(file));
  }
  return hash.digest('hex');
}

/** Same model bytes, options and calibration content -> same key; anything else -> another file. */
export async function optimizeCacheKey(modelBytes: Uint8Array, options: CachedOptimizeOptions): Promise<string> {
  const { calibration, ...rest } = options;
  const sortedOptions = JSON.stringify(rest, Object.keys(rest).sort());
  return createHash('sha256')
    .update(modelBytes)
    .update('\0')
    .update(sortedOptions)
    .update('\0')
    .update(await calibrationFingerprint(calibration))
    .digest('hex')
    .slice(0, 32);
}

function optimizeOffThread(bytes: Uint8Array, options: OptimizeOptions): Promise<{ bytes: Uint8Array; report: OptimizeReport }> {
  return runOneShotWorker(path.join(__dirname, 'optimize-worker.js'), { bytes, options }, 'optimizer');
}

async function pruneCache(cacheDir: string, keep: number): Promise<void> {
  const entries = (await fs.readdir(cacheDir)).filter((f) => f.endsWith('.onnx'));
  if (entries.length <= keep) return;
  const dated = await Promise.all(entries.map(async (f) => ({ f, usedAt: (await fs.stat(path.join(cacheDir, f))).mtimeMs })));
  dated.sort((a, b) => a.usedAt - b.usedAt);
  for (const { f } of dated.slice(0, dated.length - keep)) {
    await fs.rm(path.join(cacheDir, f), { force: true });
    await fs.rm(path.join(cacheDir, f.replace(/\.onnx$/, '.json')), { force: true });
  }
}

async function readCached(modelPath: string, reportPath: string): Promise<OptimizeReport | undefined> {
  try {
    const report = JSON.parse(await fs.readFile(reportPath, 'utf8')) as OptimizeReport;
    await fs.access(modelPath);
    // Touch: pruning drops the least recently used.
    const now = new Date();
    await fs.utimes(modelPath, now, now);
    return report;
  } catch {
    return undefined;
  }
}

/**
 * The optimized model for `modelPath` with `options`, from `cacheDir` when it is there, otherwise
 * made (off the main thread) and stored. Concurrent requests for the same key share one run. The
 * model is written with a temporary file and a rename, the report after it, so a crash leaves
 * either a complete entry or one without a report, which is then made again.
 */
export async function optimizeCached(modelPath: string, options: CachedOptimizeOptions, cacheDir: string): Promise<CachedOptimizeResult> {
  const bytes = new Uint8Array(await fs.readFile(modelPath));
  const key = await optimizeCacheKey(bytes, options);
  const pending = running.get(key);
  if (pending) return pending;
  const work = (async (): Promise<CachedOptimizeResult> => {
    const base = `${path.basename(modelPath, path.extname(modelPath))}.${options.precision ?? 'fp16'}.${key}`;
    const outPath = path.join(cacheDir, `${base}.onnx`);
    const reportPath = path.join(cacheDir, `${base}.json`);
    const hit = await readCached(outPath, reportPath);
    if (hit) return { modelPath: outPath, report: hit, cached: true, key };
    const result = await optimizeOffThread(bytes, options as OptimizeOptions);
    await fs.mkdir(cacheDir, { recursive: true });
    await writeModelAtomic(outPath, result.bytes);
    await writeModelAtomic(reportPath, Buffer.from(JSON.stringify(result.report)));
    await pruneCache(cacheDir, OPTIMIZE_CACHE_ENTRIES);
    return { modelPath: outPath, report: result.report, cached: false, key };
  })();
  running.set(key, work);
  try {
    return await work;
  } finally {
    running.delete(key);
  }
}
