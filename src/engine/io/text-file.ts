import { promises as fs, constants } from 'fs';
import { InputError } from '../errors';

/** Labels and character lists are short: PP-OCR's 6,623 keys take 26 KB. */
export const MAX_TEXT_FILE_BYTES = 16 * 1024 ** 2;

// O_NONBLOCK: a named pipe given as the path must not hold the open until something writes to it.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/**
 * A small text file (labels, a character list) as UTF-8. Refuses, naming `what` and what it should
 * hold, a missing file, a folder, device or pipe (/dev/zero would never end), and anything over
 * 16 MiB; the open file itself is checked, so what is checked is what is read.
 */
export async function readTextFile(path: string, what: string, expected: string): Promise<string> {
  const refuse = (why: string) => new InputError(`cannot read ${what} ${path}: ${why}; expected ${expected}`);
  let file: fs.FileHandle;
  try {
    file = await fs.open(path, OPEN_FLAGS);
  } catch (err) {
    throw refuse((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message);
  }
  try {
    const stat = await file.stat();
    if (!stat.isFile()) throw refuse('it is not a regular file (a folder, device or pipe)');
    if (stat.size > MAX_TEXT_FILE_BYTES) throw refuse(`it is ${stat.size} bytes, over the ${MAX_TEXT_FILE_BYTES} bytes (16 MiB) a ${what} may have`);
    return await file.readFile('utf8');
  } finally {
    await file.close();
  }
}
