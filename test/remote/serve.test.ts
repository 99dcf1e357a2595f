import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import { promises as fs } from 'fs';
import * as net from 'net';
import * as path from 'path';
import { InferenceEngine, RemoteDevice, decodeTensors, splitBody } from '../../src/engine';
import { CLI, MNIST, makeRepository, send, startServe, type Answer, type ServerProcess } from './servers';

const JSON_HEADERS = { 'content-type': 'application/json' };

function assertError(a: Answer, status: number, words: RegExp): void {
  assert.equal(a.status, status, a.body.toString());
  const body = a.json();
  // $inference_error_response / $metadata_model_error_response: { "error": $string }, nothing else
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(typeof body.error, 'string');
  assert.match(body.error as string, words);
}

function mnistRequest(batch: number): string {
  const data = Array.from({ length: batch * 784 }, (_, i) => ((i * 37) % 255) / 255);
  return JSON.stringify({ inputs: [{ name: 'image', shape: [batch, 1, 28, 28], datatype: 'FP32', data }] });
}

/** The request of required_api.md's "Inference Request Examples", as printed there. */
const SPEC_REQUEST = `{
  "id" : "42",
  "inputs" : [
    {
      "name" : "input0",
      "shape" : [ 2, 2 ],
      "datatype" : "UINT32",
      "data" : [ 1, 2, 3, 4 ]
    },
    {
      "name" : "input1",
      "shape" : [ 3 ],
      "datatype" : "BOOL",
      "data" : [ true ]
    }
  ],
  "outputs" : [
    {
      "name" : "output0"
    }
  ]
}`;

describe('ncs2 serve: the Open Inference Protocol REST API of a real server process', function () {
  this.timeout(120_000);
  let repo: string;
  let server: ServerProcess;

  before(async () => {
    repo = await makeRepository();
    server = await startServe(['--models', repo, '--max-body-mb', '1']);
  });

  after(async () => {
    if (server) assert.equal(await server.stop(), 0, server.output());
    await fs.rm(repo, { recursive: true, force: true });
  });

  describe('health (200 true, 4xx false, empty body)', () => {
    for (const [path, status] of [
      ['/v2/health/live', 200],
      ['/v2/health/ready', 200],
      ['/v2/models/mnist/ready', 200],
      ['/v2/models/mlp/versions/2/ready', 200],
      ['/v2/models/mlp/versions/3/ready', 400],
      ['/v2/models/nosuchmodel/ready', 400],
    ] as const) {
      it(`GET ${path} -> ${status}`, async () => {
        const a = await send(server.url + path, 'GET');
        assert.equal(a.status, status);
        assert.equal(a.body.length, 0);
      });
    }
  });

  it('server metadata has name, version and extensions (binary_tensor_data)', async () => {
    const a = await send(`${server.url}/v2`, 'GET');
    assert.equal(a.status, 200);
    const body = a.json();
    assert.equal(body.name, 'ncs2-serve');
    assert.match(body.version as string, /^\d+\.\d+\.\d+/);
    assert.deepEqual(body.extensions, ['binary_tensor_data']);
    assert.equal(body.ncs2_simulated, false);
  });

  it('model metadata has name, versions, platform, inputs and outputs with -1 for variable dims', async () => {
    const mnist = (await send(`${server.url}/v2/models/mnist`, 'GET')).json();
    assert.deepEqual(mnist, {
      name: 'mnist',
      versions: ['1'],
      platform: 'onnx_onnxv1',
      inputs: [{ name: 'image', datatype: 'FP32', shape: [-1, 1, 28, 28] }],
      outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 10] }],
    });
    const mlp = (await send(`${server.url}/v2/models/mlp/versions/1`, 'GET')).json();
    assert.deepEqual(mlp.versions, ['1', '2']);
    assertError(await send(`${server.url}/v2/models/nosuchmodel`, 'GET'), 404, /unknown model 'nosuchmodel'; this server has 'mlp', 'mlp-batch1', 'mnist', 'mymodel'/);
    assertError(await send(`${server.url}/v2/models/mlp/versions/9`, 'GET'), 404, /model 'mlp' has no version '9'; it has 1, 2/);
  });

  describe("required_api.md's inference example", () => {
    it('as printed (UINT32, and 1 value for a [3] BOOL): 400 with an error object naming what is wrong', async () => {
      assertError(await send(`${server.url}/v2/models/mymodel/infer`, 'POST', SPEC_REQUEST, JSON_HEADERS), 400, /input 'input0': datatype "UINT32" is not supported here; expected one of BOOL, UINT8, UINT16, INT8, INT16, INT32, INT64, FP16, FP32, FP64/);
      const int32 = SPEC_REQUEST.replace('UINT32', 'INT32');
      assertError(await send(`${server.url}/v2/models/mymodel/infer`, 'POST', int32, JSON_HEADERS), 400, /input 'input1': shape \[3\] needs 3 elements, "data" has 1/);
    });

    it('with INT32 and three BOOL values: the response has every field of the example', async () => {
      const request = SPEC_REQUEST.replace('UINT32', 'INT32').replace('[ true ]', '[ true, false, true ]');
      const a = await send(`${server.url}/v2/models/mymodel/infer`, 'POST', request, JSON_HEADERS);
      assert.equal(a.status, 200, a.body.toString());
      assert.equal(a.headers['content-type'], 'application/json');
      assert.equal(Number(a.headers['content-length']), a.body.length);
      const body = a.json();
      assert.equal(body.id, '42');
      assert.equal(body.model_name, 'mymodel');
      assert.equal(body.model_version, '1');
      // output0[i][j] = input1[i] + column j's sum of [[1, 2], [3, 4]]
      assert.deepEqual(body.outputs, [{ name: 'output0', shape: [3, 2], datatype: 'FP32', data: [5, 7, 4, 6, 5, 7] }]);
      const parameters = body.parameters as Record<string, number>;
      assert.ok(parameters.ncs2_compute_ms > 0 && parameters.ncs2_queue_ms >= 0, JSON.stringify(parameters));
    });

    it('data nested as the shape (the spec allows both forms) reads the same', async () => {
      const request = { inputs: [{ name: 'input0', shape: [2, 2], datatype: 'INT32', data: [[1, 2], [3, 4]] }, { name: 'input1', shape: [3], datatype: 'BOOL', data: [true, false, true] }] };
      const body = (await send(`${server.url}/v2/models/mymodel/infer`, 'POST', JSON.stringify(request), JSON_HEADERS)).json();
      assert.equal(body.id, undefined);
      assert.deepEqual((body.outputs as Array<{ data: number[] }>)[0].data, [5, 7, 4, 6, 5, 7]);
    });

    it("the example's response, read by the client's decoder field by field (the printed one lacks a comma after \"id\" : \"42\")", () => {
      const printed = `{
      "id" : "42"
      "outputs" : [
        {
          "name" : "output0",
          "shape" : [ 3, 2 ],
          "datatype"  : "FP32",
          "data" : [ 1.0, 1.1, 2.0, 2.1, 3.0, 3.1 ]
        }
      ]
    }`;
      assert.throws(() => splitBody(Buffer.from(printed), undefined), /the body is not a JSON object/);
      const { json, binary } = splitBody(Buffer.from(printed.replace('"42"', '"42",')), undefined);
      assert.equal((json as { id: string }).id, '42');
      const [out] = decodeTensors((json as { outputs: unknown }).outputs, binary, 'output');
      assert.equal(out.name, 'output0');
      assert.deepEqual(out.dims, [3, 2]);
      assert.equal(out.type, 'float32');
      assert.deepEqual(Array.from(out.data as Float32Array), Array.from(new Float32Array([1.0, 1.1, 2.0, 2.1, 3.0, 3.1])));
    });
  });

  describe("Triton's binary tensor data extension example", () => {
    function binaryExample(headerLengthDelta = 0): { body: Buffer; headers: Record<string, string | number> } {
      const json = Buffer.from(JSON.stringify({
        model_name: 'mymodel',
        inputs: [
          { name: 'input0', shape: [2, 2], datatype: 'INT32', parameters: { binary_data_size: 16 } },
          { name: 'input1', shape: [3], datatype: 'BOOL', parameters: { binary_data_size: 3 } },
        ],
        outputs: [{ name: 'output0', parameters: { binary_data: true } }],
      }));
      const input0 = Buffer.from(new Int32Array([1, 2, 3, 4]).buffer);
      const input1 = Buffer.from([1, 0, 1]);
      const body = Buffer.concat([json, input0, input1]);
      assert.equal(body.length, json.length + 19); // "the total size of the binary data is 19 bytes"
      return { body, headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': json.length + headerLengthDelta } };
    }

    it('request with binary inputs and a binary output: JSON header, then 24 bytes of FP32', async () => {
      const { body, headers } = binaryExample();
      const a = await send(`${server.url}/v2/models/mymodel/infer`, 'POST', body, headers);
      assert.equal(a.status, 200, a.body.toString());
      assert.equal(a.headers['content-type'], 'application/octet-stream');
      const yy = Number(a.headers['inference-header-content-length']);
      assert.equal(Number(a.headers['content-length']), yy + 24);
      const response = JSON.parse(a.body.subarray(0, yy).toString()) as { outputs: Array<Record<string, unknown>> };
      assert.deepEqual(response.outputs, [{ name: 'output0', shape: [3, 2], datatype: 'FP32', parameters: { binary_data_size: 24 } }]);
      const tail = a.body.subarray(yy);
      assert.deepEqual(Array.from(new Float32Array(tail.buffer.slice(tail.byteOffset, tail.byteOffset + 24))), [5, 7, 4, 6, 5, 7]);
    });

    it("binary_data_output asks for every output as binary; the example's response decodes field by field", async () => {
      const request = Buffer.from(JSON.stringify({ parameters: { binary_data_output: true }, inputs: [{ name: 'input0', shape: [2, 2], datatype: 'INT32', data: [1, 2, 3, 4] }, { name: 'input1', shape: [3], datatype: 'BOOL', data: [true, false, true] }] }));
      const a = await send(`${server.url}/v2/models/mymodel/infer`, 'POST', request, JSON_HEADERS);
      const { json, binary } = splitBody(a.body, a.headers['inference-header-content-length']);
      const [out] = decodeTensors((json as { outputs: unknown }).outputs, binary, 'output');
      assert.deepEqual([out.name, out.type, out.dims, Array.from(out.data as Float32Array)], ['output0', 'float32', [3, 2], [5, 7, 4, 6, 5, 7]]);
    });

    it('a wrong Inference-Header-Content-Length is a 400, not a crash', async () => {
      const { body, headers } = binaryExample(-5);
      assertError(await send(`${server.url}/v2/models/mymodel/infer`, 'POST', body, headers), 400, /the body is not a JSON object in its first \d+ bytes \(Inference-Header-Content-Length\)/);
      const tooLong = binaryExample(100);
      assertError(await send(`${server.url}/v2/models/mymodel/infer`, 'POST', tooLong.body, tooLong.headers), 400, /Inference-Header-Content-Length must be the JSON object's length in bytes, 1 to \d+ \(the body's length\), got '\d+'/);
      const garbage = binaryExample();
      assertError(await send(`${server.url}/v2/models/mymodel/infer`, 'POST', garbage.body, { ...garbage.headers, 'inference-header-content-length': 'twelve' }), 400, /got 'twelve'/);
    });

    it('binary data that does not add up to the sizes declared is a 400', async () => {
      const { body, headers } = binaryExample();
      assertError(await send(`${server.url}/v2/models/mymodel/infer`, 'POST', body.subarray(0, body.length - 2), headers), 400, /input 'input1': needs 3 bytes of binary data at byte 16 after the JSON object, but only 1 remain/);
      assertError(await send(`${server.url}/v2/models/mymodel/infer`, 'POST', Buffer.concat([body, Buffer.alloc(4)]), headers), 400, /4 bytes of binary data after the JSON object that no input claims/);
    });
  });

  describe('bad input: a status and a message, and the server lives on', () => {
    const cases: Array<[string, string, string | Buffer, number, RegExp]> = [
      ['malformed JSON', '/v2/models/mnist/infer', '{"inputs": [', 400, /the body is not a JSON object: /],
      ['a JSON array', '/v2/models/mnist/infer', '[1,2]', 400, /the body must be a JSON object, got an array/],
      ['inputs not an array', '/v2/models/mnist/infer', '{"inputs": "x"}', 400, /"inputs" must be an array of tensors/],
      ['a hostile shape', '/v2/models/mnist/infer', '{"inputs": [{"name": "image", "shape": [100000, 100000, 1000], "datatype": "FP32", "data": []}]}', 400, /has 10000000000000 elements, more than 2147483647/],
      ['a negative dim', '/v2/models/mnist/infer', '{"inputs": [{"name": "image", "shape": [-1, 784], "datatype": "FP32", "data": []}]}', 400, /"shape" must be an array of non-negative integers/],
      ['strings as FP32 data', '/v2/models/mlp/infer', JSON.stringify({ inputs: [{ name: 'input', shape: [1, 2], datatype: 'FP32', data: ['a', 'b'] }] }), 400, /FP32 data must be numbers, element 0 is "a"/],
      ['a wrong shape (the engine\'s words)', '/v2/models/mlp/infer', JSON.stringify({ inputs: [{ name: 'input', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] }), 400, /input 'input': dim 1 must be 64 \(float32\[N, 64\]\), got \[1, 2\]/],
      ['a wrong datatype (the engine\'s words)', '/v2/models/mlp/infer', JSON.stringify({ inputs: [{ name: 'input', shape: [1, 64], datatype: 'FP64', data: new Array(64).fill(0) }] }), 400, /input 'input': expected type float32, got float64/],
      ['an unknown output', '/v2/models/mlp/infer', JSON.stringify({ inputs: [{ name: 'input', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0) }], outputs: [{ name: 'nope' }] }), 400, /unknown output "nope"; model 'mlp' has outputs 'output'/],
      ['an unknown model', '/v2/models/nosuchmodel/infer', mnistRequest(1), 404, /unknown model 'nosuchmodel'/],
      ['an unknown endpoint', '/v3/anything', '', 404, /no such endpoint: POST \/v3\/anything/],
      ['a model name that is not valid percent-encoding', '/v2/models/%E0%A4%A/infer', '', 400, /the path \/v2\/models\/%E0%A4%A\/infer is not valid percent-encoding/],
      ['too large for the limit (1 MiB)', '/v2/models/mnist/infer', Buffer.alloc(2 * 1024 * 1024, 32), 413, /request body of 2097152 bytes is larger than this server's limit of 1048576 bytes/],
    ];
    for (const [what, path, body, status, words] of cases) {
      it(`${what}: ${status}`, async () => {
        assertError(await send(server.url + path, 'POST', body, JSON_HEADERS), status, words);
      });
    }

    it('a wrong method is a 405 naming the right one', async () => {
      assertError(await send(`${server.url}/v2/models/mnist/infer`, 'GET'), 405, /\/v2\/models\/mnist\/infer answers POST, got GET/);
    });

    it('clients that hang up mid-body or before their answer leave it running', async () => {
      const raw = (text: string, wait: () => Promise<unknown>) =>
        new Promise<void>((resolve, reject) => {
          const socket = net.connect(server.port, '127.0.0.1', () => {
            socket.write(text);
            void wait().then(() => {
              socket.destroy();
              resolve();
            });
          });
          socket.on('error', reject);
        });
      const body = mnistRequest(64);
      // declares the whole body, sends half of it
      await raw(`POST /v2/models/mnist/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, body.length / 2)}`, () => new Promise((r) => setTimeout(r, 50)));
      // sends it all, leaves while it runs
      await raw(`POST /v2/models/mnist/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`, () => new Promise((r) => setImmediate(r)));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal((await send(`${server.url}/v2/models/mnist/infer`, 'POST', mnistRequest(1), JSON_HEADERS)).status, 200);
    });

    it('after all of that it is still live, and /metrics counts what it ran', async () => {
      assert.equal((await send(`${server.url}/v2/health/live`, 'GET')).status, 200);
      assert.equal((await send(`${server.url}/v2/models/mnist/infer`, 'POST', mnistRequest(2), JSON_HEADERS)).status, 200);
      const metrics = await send(`${server.url}/metrics`, 'GET');
      assert.equal(metrics.status, 200);
      assert.match(String(metrics.headers['content-type']), /^text\/plain/);
      assert.match(metrics.body.toString(), /ncs2_\w+\{[^}]*graph="mnist\/1"[^}]*\} [1-9]/);
    });
  });
});

describe('ncs2 serve: bounded, and a clean SIGTERM (simulated sticks)', function () {
  this.timeout(120_000);
  let repo: string;

  before(async () => {
    repo = await makeRepository();
  });

  after(async () => {
    await fs.rm(repo, { recursive: true, force: true });
  });

  it('a full queue answers 503 with a reason and Retry-After; the accepted ones are answered', async () => {
    const server = await startServe(['--models', repo, '--device', 'sim-ncs2', '--queue', '1']);
    try {
      const answers = await Promise.all(Array.from({ length: 40 }, () => send(`${server.url}/v2/models/mnist/infer`, 'POST', mnistRequest(16), JSON_HEADERS)));
      const busy = answers.filter((a) => a.status === 503);
      const ok = answers.filter((a) => a.status === 200);
      assert.equal(busy.length + ok.length, 40, answers.map((a) => a.status).join(','));
      assert.ok(busy.length > 0 && ok.length > 0, `200: ${ok.length}, 503: ${busy.length}`);
      assertError(busy[0], 503, /^server busy: rejected: queue of mnist\/1 is full \(1 waiting/);
      assert.equal(busy[0].headers['retry-after'], '1');
      for (const a of ok) assert.deepEqual((a.json().outputs as Array<{ shape: number[] }>)[0].shape, [16, 10]);
      // a remote member in front of simulated sticks says simulated, as the sticks themselves do
      const engine = new InferenceEngine({ devices: [new RemoteDevice({ kind: 'remote', id: 'sim-server', url: server.url, model: 'mnist' })] });
      await engine.loadGraph(MNIST);
      const stats = engine.getStats();
      assert.deepEqual([stats.simulated, stats.devices['sim-server'].simulated], [true, true]);
      await engine.close();
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });

  it('SIGTERM: the requests in flight are answered, then it exits 0 and accepts no more', async () => {
    const server = await startServe(['--models', repo, '--device', 'sim-ncs2']);
    let signalledAt = Infinity;
    const answered: number[] = [];
    const requests = Array.from({ length: 24 }, () =>
      send(`${server.url}/v2/models/mnist/infer`, 'POST', mnistRequest(16), JSON_HEADERS).then((a) => {
        answered.push(performance.now());
        return a;
      }),
    );
    // in flight = received by the server: wait until all 24 reached its engine (a connection whose
    // request has not arrived yet is closed at SIGTERM, as any HTTP server that stops does)
    for (;;) {
      const metrics = (await send(`${server.url}/metrics`, 'GET')).body.toString();
      if (/ncs2_tasks_submitted_total\{[^}]*graph="mnist\/1"[^}]*\} 24\b/.test(metrics)) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    signalledAt = performance.now();
    server.proc.kill('SIGTERM');
    const answers = await Promise.all(requests);
    assert.deepEqual(answers.map((a) => a.status), new Array(24).fill(200));
    assert.ok(answered.filter((t) => t > signalledAt).length > 0, 'no request was still in flight at SIGTERM: the test proved nothing');
    assert.equal(await server.exited, 0, server.output());
    assert.match(server.output(), /SIGTERM: answering the requests in flight[\s\S]*stopped/);
    await assert.rejects(send(`${server.url}/v2/health/live`, 'GET'), /ECONNREFUSED/);
  });
});

describe('ncs2 serve: command-line mistakes', function () {
  this.timeout(60_000);
  const run = (args: string[]) =>
    new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, 'serve', ...args], { timeout: 30_000 }, (err, _stdout, stderr) => resolve({ code: err ? Number((err as NodeJS.ErrnoException).code) : 0, stderr }));
    });

  it('exit 1 saying what was expected', async () => {
    const repo = await makeRepository();
    try {
      await fs.mkdir(path.join(repo, 'broken', '1'), { recursive: true });
      await fs.writeFile(path.join(repo, 'broken', '1', 'model.onnx'), 'not a model');
      for (const [args, words] of [
        [[], /ncs2: error: --models <dir> is required/],
        [['--models', '/nonexistent-repo'], /cannot read the model repository \/nonexistent-repo: ENOENT; expected a folder of <name>\/<version>\/model\.onnx/],
        [['--models', repo, '--device', 'gpu'], /--device must be cpu or sim-ncs2, got 'gpu'/],
        [['--models', repo, '--port', 'eighty'], /--port must be a non-negative integer, got 'eighty'/],
        [['--models', repo], /cannot load model from .*broken\/1\/model\.onnx/],
      ] as Array<[string[], RegExp]>) {
        const r = await run(args);
        assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, words);
      }
    } finally {
      await fs.rm(repo, { recursive: true, force: true });
    }
  });
});
