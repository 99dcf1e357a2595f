import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { TensorData } from '../../src/engine/tensor';
import { ConfigError } from '../../src/engine/io/errors';
import { checkClassificationOutput, classify, loadLabels, parseLabels, rawOutputs, topIndices } from '../../src/engine/io/postprocess';

function scores(rows: number[][], name = 'scores'): Record<string, TensorData> {
  return { [name]: { type: 'float32', dims: [rows.length, rows[0].length], data: Float32Array.from(rows.flat()) } };
}

function softmax(row: number[]): number[] {
  const max = Math.max(...row);
  const e = row.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

describe('io/postprocess', function () {
  describe('topIndices', function () {
    it('matches a full sort for random rows, ties keeping the lower index first', function () {
      let seed = 7;
      const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
      for (let trial = 0; trial < 200; trial++) {
        const n = 1 + Math.floor(random() * 40);
        const k = 1 + Math.floor(random() * 8);
        // Few distinct values, so ties are common.
        const row = Array.from({ length: n }, () => Math.floor(random() * 6));
        const expected = row.map((v, i) => ({ v, i })).sort((a, b) => b.v - a.v || a.i - b.i).slice(0, k).map((x) => x.i);
        assert.deepEqual(topIndices(row, 0, n, k), expected, `row ${row.join(',')} k=${k}`);
      }
    });

    it('reads one row of a larger array', function () {
      assert.deepEqual(topIndices([9, 9, 9, 1, 5, 3, 9, 9], 3, 3, 2), [1, 2]);
    });
  });

  describe('classify', function () {
    it('applies softmax to logits (auto) and lists the top-k with labels', function () {
      const row = [0.5, 3, -1, 2, 0];
      const [result] = classify(scores([row]), { topK: 3, labels: ['a', 'b', 'c', 'd', 'e'] });
      const p = softmax(row);
      assert.equal(result.index, 1);
      assert.equal(result.label, 'b');
      assert.ok(Math.abs(result.score - p[1]) < 1e-6);
      assert.deepEqual(result.top.map((t) => t.label), ['b', 'd', 'a']);
      result.top.forEach((t) => assert.ok(Math.abs(t.score - p[t.index]) < 1e-6));
      assert.deepEqual({ index: result.index, label: result.label, score: result.score }, result.top[0]);
    });

    it('leaves rows that already are probabilities as they are (auto)', function () {
      const [result] = classify(scores([[0.1, 0.7, 0.2]]), { topK: 2 });
      assert.ok(Math.abs(result.score - 0.7) < 1e-6);
      assert.ok(Math.abs(result.top[1].score - 0.2) < 1e-6);
    });

    it("'always' softmaxes even probability-like rows; 'never' reports raw scores", function () {
      const row = [0.1, 0.7, 0.2];
      const [always] = classify(scores([row]), { softmax: 'always' });
      assert.ok(Math.abs(always.score - softmax(row)[1]) < 1e-6);
      const [never] = classify(scores([[3, -2, 8]]), { softmax: 'never' });
      assert.equal(never.score, 8);
    });

    it('gives one result per batch row, index labels when there are no labels, and clips k', function () {
      const results = classify(scores([[0, 5], [7, 1]]), { topK: 10 });
      assert.equal(results.length, 2);
      assert.deepEqual(results.map((r) => r.label), ['1', '0']);
      assert.equal(results[0].top.length, 2);
    });

    it('uses the named output and handles [N, classes, 1, 1]', function () {
      const outputs = {
        boxes: { type: 'float32' as const, dims: [1, 4], data: new Float32Array([9, 9, 9, 9]) },
        probs: { type: 'float32' as const, dims: [1, 3, 1, 1], data: new Float32Array([0, 0, 4]) },
      };
      const [result] = classify(outputs, { outputName: 'probs' });
      assert.equal(result.index, 2);
      assert.throws(() => classify(outputs, { outputName: 'nope' }), (err: Error) => err instanceof ConfigError && /no output 'nope'; its outputs are 'boxes', 'probs'/.test(err.message));
    });

    it('refuses outputs that are not scores', function () {
      assert.throws(() => classify({ y: { type: 'float32', dims: [10], data: new Float32Array(10) } }), /shaped \[N, classes\].*is \[10\]; use the raw preset/);
      assert.throws(() => classify({ y: { type: 'int64', dims: [1, 2], data: new BigInt64Array(2) } }), /output 'y' is int64; use the raw preset/);
    });
  });

  describe('checkClassificationOutput', function () {
    it('accepts [N, classes] and names the output it will use', function () {
      assert.equal(checkClassificationOutput([{ name: 'logits', type: 'float32', dims: ['N', 10] }]), 'logits');
    });

    it('refuses a missing output, a non-numeric type and a 1-D output', function () {
      assert.throws(() => checkClassificationOutput([{ name: 'a', type: 'float32', dims: ['N', 2] }], 'b'), /no output 'b'; its outputs are 'a'/);
      assert.throws(() => checkClassificationOutput([{ name: 'a', type: 'string', dims: ['N', 2] }]), /numeric scores; output 'a' is string/);
      assert.throws(() => checkClassificationOutput([{ name: 'a', type: 'float32', dims: ['N'] }]), /\[N, classes\]; output 'a' is \[N\]/);
    });
  });

  describe('rawOutputs', function () {
    it("gives plain arrays by default ('array'), int64 as numbers", function () {
      const result = rawOutputs({
        logits: { type: 'float32', dims: [1, 3], data: new Float32Array([1, 2, 3]) },
        ids: { type: 'int64', dims: [2], data: new BigInt64Array([5n, 6n]) },
      });
      assert.deepEqual(result, { logits: { data: [1, 2, 3], dims: [1, 3] }, ids: { data: [5, 6], dims: [2] } });
      assert.ok(Array.isArray(result.logits.data));
      JSON.stringify(result); // would throw on BigInt
    });

    it("'typed' keeps a whole typed array and copies a view of part of a buffer", function () {
      const whole = new Float32Array([1, 2]);
      const arena = new ArrayBuffer(64);
      const view = new Float32Array(arena, 16, 2);
      view.set([3, 4]);
      const result = rawOutputs({ a: { type: 'float32', dims: [2], data: whole }, b: { type: 'float32', dims: [2], data: view } }, 'typed');
      assert.equal(result.a.data, whole);
      const copied = result.b.data as Float32Array;
      assert.notEqual(copied.buffer, arena);
      assert.equal(copied.buffer.byteLength, 8);
      assert.deepEqual(Array.from(copied), [3, 4]);
    });

    it("gives one request's rows of a batched result, each in its own memory, in either format", function () {
      const batch = { type: 'float32' as const, dims: [3, 2], data: new Float32Array([1, 2, 3, 4, 5, 6]) };
      const typed = rawOutputs({ y: batch }, 'typed', 1, 2);
      assert.deepEqual(typed.y.dims, [2, 2]);
      assert.deepEqual(Array.from(typed.y.data as Float32Array), [3, 4, 5, 6]);
      assert.equal((typed.y.data as Float32Array).buffer.byteLength, 16, 'a copy of the two rows, not a view of the batch');
      assert.deepEqual(rawOutputs({ y: batch }, 'array', 0, 1), { y: { data: [1, 2], dims: [1, 2] } });
      assert.deepEqual(batch.dims, [3, 2], 'the batch result is left as it was');
    });
  });

  describe('labels', function () {
    it('parses one label per line, tolerating CRLF, a BOM and a trailing newline', function () {
      assert.deepEqual(parseLabels('\uFEFFcat\r\ndog\r\n'), ['cat', 'dog']);
      assert.deepEqual(parseLabels('a\n\nc'), ['a', '', 'c']);
    });

    it('loads a file and says which file is missing or empty', async function () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-labels-'));
      try {
        fs.writeFileSync(path.join(dir, 'l.txt'), 'zero\none\n');
        assert.deepEqual(await loadLabels(path.join(dir, 'l.txt')), ['zero', 'one']);
        await assert.rejects(loadLabels(path.join(dir, 'missing.txt')), /cannot read labels file .*missing.txt: no such file; expected a text file with one label per line/);
        fs.writeFileSync(path.join(dir, 'empty.txt'), '');
        await assert.rejects(loadLabels(path.join(dir, 'empty.txt')), /empty.txt is empty/);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
