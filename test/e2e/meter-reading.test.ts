/**
 * examples/meter-reading.json on a real Node-RED runtime (the harness of runtime.test.ts): the
 * flow deploys as imported, each bundled meter sample goes in through the example's inject node,
 * and the readings in the debug sidebar must equal the samples' ground truth, with no errors.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { RedProcess, type DebugMessage, type DebugStream, type FlowNode } from './harness';
import { ROOT } from './red-boot';

const EXAMPLE = path.join(ROOT, 'examples', 'meter-reading.json');
const SAMPLES = path.join(ROOT, 'models', 'ocr-samples');

interface Reading {
  filename?: string;
  payload?: { readings: string[]; lines: Array<{ text: string; confidence: number; box: { x: number; y: number; w: number; h: number } }> };
}

describe(`example meter-reading on a real Node-RED runtime (${process.env.NODE_RED_PATH ? `NODE_RED_PATH=${process.env.NODE_RED_PATH}` : 'node-red devDependency'})`, function () {
  this.timeout(300000);
  let red: RedProcess;
  let debug: DebugStream;
  const flow = JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')) as FlowNode[];
  const truth = JSON.parse(fs.readFileSync(path.join(SAMPLES, 'ground-truth.json'), 'utf8')) as Record<string, string[]>;
  const inject = flow.find((n) => n.type === 'inject');
  const out = flow.find((n) => n.type === 'debug' && n.name === 'readings');
  const errors = flow.filter((n) => n.type === 'debug' && n !== out).map((n) => n.id);

  const reading = (m: DebugMessage): Reading => JSON.parse(m.msg) as Reading;

  before(async function () {
    assert.ok(inject && out, 'the example has an inject node and a "readings" debug node');
    red = await RedProcess.start({ settings: { debugMaxLength: 20000 } });
    debug = await red.debugStream();
  });

  after(async function () {
    debug?.close();
    await red?.stop();
  });

  it('reads every bundled meter sample as its ground truth', async function () {
    await red.deploy(flow, debug);
    for (const [file, expected] of Object.entries(truth)) {
      const full = path.join(SAMPLES, file);
      await red.inject(inject!.id, [{ p: 'filename', v: full, vt: 'str' }]);
      const [m] = await debug.waitFor((d) => d.id === out!.id && reading(d).filename === full, 1, 60000, `readings of ${file}`);
      const r = reading(m);
      assert.deepEqual(r.payload!.readings, expected, `${file}: read ${JSON.stringify(r.payload!.readings)}`);
      for (const line of r.payload!.lines) {
        assert.ok(line.confidence > 0.8 && line.confidence <= 1, `${file} '${line.text}': confidence ${line.confidence}`);
        assert.ok(line.box.x >= 0 && line.box.y >= 0 && line.box.x + line.box.w <= 320 && line.box.y + line.box.h <= 240, `${file}: box ${JSON.stringify(line.box)}`);
      }
    }
    // The example's own timer read random samples meanwhile: right too.
    for (const m of debug.messages.filter((d) => d.id === out!.id)) {
      const r = reading(m);
      assert.deepEqual(r.payload!.readings, truth[path.basename(r.filename!)], r.filename);
    }
    const failed = debug.messages.filter((m) => m.level === 20 || errors.includes(m.id));
    assert.deepEqual(failed.map((m) => m.msg), [], 'errors in the debug sidebar');
  });
});
