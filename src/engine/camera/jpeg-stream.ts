/**
 * Splits a byte stream of concatenated JPEGs (ffmpeg's `-f image2pipe -c:v mjpeg` output) into
 * one Buffer per frame, on the SOI (FF D8) and EOI (FF D9) markers.
 *
 * Hand-written because it is some forty lines and the package adds no dependency for it. Marker
 * scanning is enough for ffmpeg's MJPEG encoder output: it writes no embedded thumbnails (whose
 * own SOI/EOI would end a frame early) and stuffs every FF byte of the entropy-coded data with 00.
 */

const MARKER = 0xff;
const SOI = 0xd8;
const EOI = 0xd9;

export class JpegSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Whether an SOI was seen and the frame's bytes are being collected. */
  private inFrame = false;
  /** The last byte of the previous chunk was FF: a marker may straddle two chunks. */
  private lastWasMarker = false;

  /** Frames larger than this are dropped whole (a broken stream must not fill memory). */
  constructor(private readonly maxFrameBytes = 32 * 1024 * 1024) {}

  /** Feeds a chunk; returns the frames it completed, oldest first. */
  push(chunk: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    let start = this.inFrame ? 0 : -1;
    for (let i = 0; i < chunk.length; i++) {
      const previousIsMarker = i === 0 ? this.lastWasMarker : chunk[i - 1] === MARKER;
      if (!previousIsMarker) continue;
      const byte = chunk[i];
      if (byte === SOI && !this.inFrame) {
        this.inFrame = true;
        // the FF of this SOI may sit at the end of the previous chunk
        if (i === 0) {
          this.pending = [Buffer.from([MARKER])];
          this.pendingBytes = 1;
          start = 0;
        } else {
          start = i - 1;
        }
      } else if (byte === EOI && this.inFrame) {
        this.pending.push(chunk.subarray(start, i + 1));
        frames.push(Buffer.concat(this.pending));
        this.pending = [];
        this.pendingBytes = 0;
        this.inFrame = false;
        start = -1;
      }
    }
    this.lastWasMarker = chunk.length > 0 && chunk[chunk.length - 1] === MARKER;
    if (this.inFrame && start >= 0) {
      const rest = chunk.subarray(start);
      this.pending.push(rest);
      this.pendingBytes += rest.length;
      if (this.pendingBytes > this.maxFrameBytes) this.reset();
    }
    return frames;
  }

  /** Forgets a partial frame (a new connection starts clean). */
  reset(): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.inFrame = false;
    this.lastWasMarker = false;
  }
}

/**
 * Width and height of a JPEG from its start-of-frame segment, without decoding it; null when the
 * buffer is not a JPEG or has no SOF before the image data.
 */
export function jpegSize(jpeg: Buffer): { width: number; height: number } | null {
  if (jpeg.length < 4 || jpeg[0] !== MARKER || jpeg[1] !== SOI) return null;
  let offset = 2;
  while (offset + 9 < jpeg.length) {
    if (jpeg[offset] !== MARKER) return null;
    const marker = jpeg[offset + 1];
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { height: jpeg.readUInt16BE(offset + 5), width: jpeg.readUInt16BE(offset + 7) };
    }
    if (marker === 0xda) return null; // start of scan: no SOF before the data
    offset += 2 + jpeg.readUInt16BE(offset + 2);
  }
  return null;
}
