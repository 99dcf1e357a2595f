/**
 * Crash-safe model writing: the bytes go to a temporary file in the target's directory,
 * are flushed to disk, and only then renamed over the target. rename() within one file
 * system is atomic, so a reader (or a crash) sees the old file or the new one, never a
 * half-written model.
 */
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

export async function writeModelAtomic(target: string, bytes: Uint8Array): Promise<void> {
  const full = path.resolve(target);
  const dir = path.dirname(full);
  const tmp = path.join(dir, `.${path.basename(full)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(tmp, 'wx', 0o644);
    await handle.writeFile(bytes);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fs.promises.rename(tmp, full);
  } catch (err) {
    if (handle) await handle.close().catch(() => undefined);
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
  // Persist the rename itself; directories cannot be opened for fsync on every platform.
  try {
    const d = await fs.promises.open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // Best effort only: the file content is already durable.
  }
}
