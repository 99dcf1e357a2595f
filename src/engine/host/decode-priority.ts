import { promises as fs } from 'fs';
import { setPriority } from 'os';

/**
 * sharp decodes and resizes in libvips' worker threads, which run at the process's priority like
 * the main thread. With every core decoding 1080p JPEGs the event loop then waits its turn behind
 * them (event-loop p99 10 ms measured on 2 cores). A higher nice value for those threads, as the
 * inference workers already have, keeps the main thread first in line while they still get every
 * idle cycle. Linux lets one thread's nice value be set by its id (found in /proc/self/task by the
 * name libvips gives its threads); elsewhere this finds no threads and does nothing.
 */
export const DECODE_THREAD_NICE = 5;
const VIPS_THREAD_NAME = 'libvips worker';

const reniced = new Set<number>();

/** Renices libvips threads not seen before; returns how many threads have the lower priority. */
export async function lowerDecodeThreadPriority(nice = DECODE_THREAD_NICE): Promise<number> {
  let tids: string[];
  try {
    tids = await fs.readdir('/proc/self/task');
  } catch {
    return 0;
  }
  const live = new Set<number>();
  for (const name of tids) {
    const tid = Number(name);
    live.add(tid);
    if (reniced.has(tid)) continue;
    try {
      if ((await fs.readFile(`/proc/self/task/${name}/comm`, 'utf8')).trim() !== VIPS_THREAD_NAME) continue;
      setPriority(tid, nice);
      reniced.add(tid);
    } catch {
      // The thread ended meanwhile, or the system refuses: decoding just keeps its priority.
    }
  }
  // Thread ids are reused: forget the ones that ended.
  for (const tid of reniced) if (!live.has(tid)) reniced.delete(tid);
  return reniced.size;
}
