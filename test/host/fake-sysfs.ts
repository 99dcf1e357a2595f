import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';

/** A throw-away directory tree: { 'sys/devices/...': 'content' }. */
export function fakeRoot(files: Record<string, string>): { root: string; remove(): void } {
  const root = mkdtempSync(path.join(os.tmpdir(), 'ncs2-sysfs-'));
  for (const [p, content] of Object.entries(files)) {
    const full = path.join(root, p);
    mkdirSync(path.dirname(full), { recursive: true });
    writeFileSync(full, content);
  }
  return { root, remove: () => rmSync(root, { recursive: true, force: true }) };
}
