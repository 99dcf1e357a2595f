import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { ROOT } from './support';

// The JSONata engine of the Node-RED the tests run (its inject node evaluates these expressions).
const jsonata = require(require.resolve('jsonata', { paths: [path.dirname(require.resolve('@node-red/util/package.json'))] })) as (expr: string) => {
  registerFunction(name: string, fn: (...args: string[]) => unknown, signature?: string): void;
  evaluate(input: unknown): Promise<unknown>;
};

interface InjectNode {
  type: string;
  name?: string;
  props?: Array<{ p: string; v: string; vt: string }>;
}

const EXAMPLES = path.join(ROOT, 'examples');

describe('examples/: file names the inject nodes pick at random', function () {
  // `[...][$floor($random() * n)]` is a predicate in JSONata, evaluated once per element: it yields
  // no element or several about half the time. Each expression must name one existing file, always.
  for (const file of fs.readdirSync(EXAMPLES).filter((f) => f.endsWith('.json'))) {
    const flow = JSON.parse(fs.readFileSync(path.join(EXAMPLES, file), 'utf8')) as InjectNode[];
    for (const inject of flow.filter((n) => n.type === 'inject')) {
      for (const prop of (inject.props ?? []).filter((p) => p.vt === 'jsonata' && p.v.includes('$random'))) {
        it(`${file}: "${inject.name}" sets msg.${prop.p} to one existing file every time`, async function () {
          const expr = jsonata(prop.v);
          expr.registerFunction('env', (name: string) => (name === 'NCS2_MODELS_DIR' ? path.join(ROOT, 'models') : undefined), '<s:s>');
          for (let i = 0; i < 300; i++) {
            const value = await expr.evaluate({});
            assert.equal(typeof value, 'string', `evaluation ${i} gave ${JSON.stringify(value)}`);
            assert.ok(fs.existsSync(value as string), `evaluation ${i} names a missing file: ${String(value)}`);
          }
        });
      }
    }
  }
});
