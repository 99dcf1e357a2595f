import { strict as assert } from 'assert';
import * as fs from 'fs';
import { getPriority } from 'os';
import sharp from 'sharp';
import { DECODE_THREAD_NICE, lowerDecodeThreadPriority } from '../../src/engine/host/decode-priority';

/** Nice value of every thread of this process whose name is `name` (Linux /proc). */
function niceOf(name: string): number[] {
  return fs.readdirSync('/proc/self/task').flatMap((tid) => {
    try {
      if (fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() !== name) return [];
      const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      // After "(comm) " the fields start at state (field 3 of stat); nice is field 19.
      return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])];
    } catch {
      return [];
    }
  });
}

describe('decode threads yield to the main thread (host/decode-priority)', function () {
  it("renices libvips' worker threads, leaving the main thread's priority alone", async function () {
    const jpeg = await sharp({ create: { width: 640, height: 480, channels: 3, background: { r: 10, g: 100, b: 200 } } }).jpeg().toBuffer();
    await Promise.all([1, 2].map(() => sharp(jpeg).resize(224, 224).raw().toBuffer()));
    assert.ok(niceOf('libvips worker').length > 0, 'sharp ran its libvips worker threads');
    const count = await lowerDecodeThreadPriority();
    const vips = niceOf('libvips worker');
    assert.equal(count, vips.length);
    assert.deepEqual([...new Set(vips)], [DECODE_THREAD_NICE]);
    const main = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    assert.equal(Number(main.slice(main.lastIndexOf(')') + 2).split(' ')[16]), getPriority(), "the main thread keeps the process's priority");
  });
});
