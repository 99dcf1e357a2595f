import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { CpuDevice, InferenceEngine, InputError, createDevice, type RemoteDevice, type TensorData } from '../../src/engine';
import { MLP, MNIST, makeRepository, send, startServe, type ServerProcess } from './servers';

/** The .proto as the package ships it (copied beside the compiled remote device). */
const PROTO = path.resolve(__dirname, '../../src/engine/devices/remote/grpc_predict_v2.proto');

type Call = (request: object, metadata?: grpc.Metadata) => Promise<Record<string, unknown>>;

/** A client of the service made from the .proto alone, as any other gRPC user of the protocol would make it. */
function protoClient(port: number): { call: Record<string, Call>; close(): void } {
  const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true, oneofs: true });
  const Service = (grpc.loadPackageDefinition(definition).inference as grpc.GrpcObject).GRPCInferenceService as grpc.ServiceClientConstructor;
  const client = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call: Record<string, Call> = {};
  for (const method of ['ServerLive', 'ServerReady', 'ModelReady', 'ServerMetadata', 'ModelMetadata', 'ModelInfer']) {
    call[method] = (request, metadata = new grpc.Metadata()) =>
      new Promise((resolve, reject) => {
        (client as unknown as Record<string, (r: object, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: Record<string, unknown>) => void) => void>)[method](request, metadata, { deadline: Date.now() + 30_000 }, (err, value) => (err ? reject(err) : resolve(value)));
      });
  }
  return { call, close: () => client.close() };
}

function mnistInput(batch: number): Float32Array {
  const data = new Float32Array(batch * 784);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 31 + 17) % 251) / 251;
  return data;
}

function mlpFeeds(batch: number, seed = 1): Record<string, TensorData> {
  const data = new Float32Array(batch * 64);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37 + seed);
  return { input: { type: 'float32', dims: [batch, 64], data } };
}

function bytesOf(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function assertClose(actual: Float32Array, expected: Float32Array): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < actual.length; i++) assert.ok(Math.abs(actual[i] - expected[i]) <= 1e-5 * Math.max(1, Math.abs(expected[i])), `element ${i}: ${actual[i]} vs ${expected[i]}`);
}

function floatsOf(raw: Uint8Array): Float32Array {
  const copy = new Float32Array(raw.byteLength / 4);
  new Uint8Array(copy.buffer).set(raw);
  return copy;
}

function infer(client: ReturnType<typeof protoClient>, batch: number): Promise<Record<string, unknown>> {
  return client.call.ModelInfer({ model_name: 'mnist', inputs: [{ name: 'image', datatype: 'FP32', shape: [batch, 1, 28, 28] }], raw_input_contents: [bytesOf(mnistInput(batch))] });
}

async function assertStatus(promise: Promise<unknown>, code: grpc.status, words: RegExp): Promise<void> {
  await assert.rejects(promise, (err: grpc.ServiceError) => {
    assert.equal(grpc.status[err.code], grpc.status[code], err.details);
    assert.match(err.details, words);
    return true;
  });
}

describe('ncs2 serve --grpc-port: the Open Inference Protocol gRPC API of a real server process', function () {
  this.timeout(120_000);
  let repo: string;
  let server: ServerProcess;
  let client: ReturnType<typeof protoClient>;
  const expected: Record<string, Float32Array> = {};

  before(async () => {
    repo = await makeRepository();
    server = await startServe(['--models', repo, '--grpc-port', '0', '--workers', '1', '--max-body-mb', '1']);
    assert.ok(server.grpcPort && server.grpcPort !== server.port, server.output());
    client = protoClient(server.grpcPort);
    const local = new InferenceEngine({ devices: [new CpuDevice({ id: 'local', workers: 1 })] });
    try {
      const mnist = await local.loadGraph(MNIST);
      expected.mnist = (await local.submit(mnist, { image: { type: 'float32', dims: [3, 1, 28, 28], data: mnistInput(3) } })).outputs.logits.data as Float32Array;
      const mlp = await local.loadGraph(MLP);
      expected.mlp = (await local.submit(mlp, mlpFeeds(4))).outputs.output.data as Float32Array;
    } finally {
      await local.close();
    }
  });

  after(async () => {
    client?.close();
    if (server) assert.equal(await server.stop(), 0, server.output());
    await fs.rm(repo, { recursive: true, force: true });
  });

  it('ServerLive, ServerReady, ModelReady and ServerMetadata', async () => {
    assert.deepEqual(await client.call.ServerLive({}), { live: true });
    assert.deepEqual(await client.call.ServerReady({}), { ready: true });
    assert.deepEqual(await client.call.ModelReady({ name: 'mlp', version: '2' }), { ready: true });
    assert.deepEqual(await client.call.ModelReady({ name: 'mlp', version: '3' }), { ready: false });
    assert.deepEqual(await client.call.ModelReady({ name: 'nosuchmodel' }), { ready: false });
    const meta = await client.call.ServerMetadata({});
    assert.equal(meta.name, 'ncs2-serve');
    assert.match(meta.version as string, /^\d+\.\d+\.\d+/);
  });

  it('ModelMetadata gives the tensors, variable dims as -1', async () => {
    assert.deepEqual(await client.call.ModelMetadata({ name: 'mnist' }), {
      name: 'mnist',
      versions: ['1'],
      platform: 'onnx_onnxv1',
      inputs: [{ name: 'image', datatype: 'FP32', shape: [-1, 1, 28, 28] }],
      outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 10] }],
    });
    assert.deepEqual((await client.call.ModelMetadata({ name: 'mlp' })).versions, ['1', '2']);
  });

  it('ModelInfer with raw_input_contents gives the numbers local inference gives, with the id and the server times', async () => {
    const answer = await client.call.ModelInfer({
      model_name: 'mnist',
      id: 'req-7',
      inputs: [{ name: 'image', datatype: 'FP32', shape: [3, 1, 28, 28] }],
      raw_input_contents: [bytesOf(mnistInput(3))],
    });
    assert.equal(answer.model_name, 'mnist');
    assert.equal(answer.model_version, '1');
    assert.equal(answer.id, 'req-7');
    const outputs = answer.outputs as Array<{ name: string; datatype: string; shape: number[] }>;
    assert.deepEqual(outputs.map((o) => [o.name, o.datatype, o.shape]), [['logits', 'FP32', [3, 10]]]);
    const raw = answer.raw_output_contents as Buffer[];
    assert.equal(raw.length, 1);
    assertClose(floatsOf(raw[0]), expected.mnist);
    const parameters = answer.parameters as Record<string, { int64_param?: number; parameter_choice?: string }>;
    assert.equal(parameters.ncs2_compute_us.parameter_choice, 'int64_param');
    assert.ok(parameters.ncs2_compute_us.int64_param! > 0, JSON.stringify(parameters));
    assert.equal(parameters.ncs2_queue_us.parameter_choice, 'int64_param');
  });

  it('an unknown model is NOT_FOUND, naming the models there are', async () => {
    await assertStatus(client.call.ModelMetadata({ name: 'nosuchmodel' }), grpc.status.NOT_FOUND, /^unknown model 'nosuchmodel'; this server has 'mlp', 'mlp-batch1', 'mnist', 'mymodel'$/);
    await assertStatus(client.call.ModelInfer({ model_name: 'mlp', model_version: '9', inputs: [] }), grpc.status.NOT_FOUND, /^model 'mlp' has no version '9'; it has 1, 2$/);
  });

  it("a wrong shape, a wrong size or typed contents are INVALID_ARGUMENT in the engine's words", async () => {
    const data = mnistInput(1);
    await assertStatus(
      client.call.ModelInfer({ model_name: 'mnist', inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 28, 27] }], raw_input_contents: [bytesOf(data.subarray(0, 28 * 27))] }),
      grpc.status.INVALID_ARGUMENT,
      /^input 'image': dim 3 must be 28 \(float32\[N, 1, 28, 28\]\), got \[1, 1, 28, 27\]$/,
    );
    await assertStatus(
      client.call.ModelInfer({ model_name: 'mnist', inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28] }], raw_input_contents: [bytesOf(data.subarray(0, 100))] }),
      grpc.status.INVALID_ARGUMENT,
      /^input 'image': raw_input_contents\[0\] has 400 bytes, but FP32 shape \[1, 1, 28, 28\] needs 3136$/,
    );
    await assertStatus(
      client.call.ModelInfer({ model_name: 'mnist', inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], contents: { fp32_contents: Array.from(data) } }] }),
      grpc.status.INVALID_ARGUMENT,
      /^1 input\(s\) but 0 raw_input_contents entries; typed "contents" are not read here, send every tensor in raw_input_contents$/,
    );
    await assertStatus(
      client.call.ModelInfer({ model_name: 'mnist', inputs: [{ name: 'image', datatype: 'UINT32', shape: [1] }], raw_input_contents: [Buffer.alloc(4)] }),
      grpc.status.INVALID_ARGUMENT,
      /^input 'image': datatype "UINT32" is not supported here/,
    );
  });

  it('a message over --max-body-mb is RESOURCE_EXHAUSTED, and the server goes on', async () => {
    const big = new Float32Array(400 * 784);
    await assertStatus(
      client.call.ModelInfer({ model_name: 'mnist', inputs: [{ name: 'image', datatype: 'FP32', shape: [400, 1, 28, 28] }], raw_input_contents: [bytesOf(big)] }),
      grpc.status.RESOURCE_EXHAUSTED,
      /larger than max/i,
    );
    assert.deepEqual(await client.call.ServerLive({}), { live: true });
  });

  it("the remote device with protocol 'grpc' runs tasks through an InferenceEngine: local numbers, round trip and server compute time", async () => {
    const mnistDevice = createDevice({ kind: 'remote', protocol: 'grpc', id: 'mnist-grpc', url: `http://127.0.0.1:${server.grpcPort}`, model: 'mnist' }) as RemoteDevice;
    const mlpDevice = createDevice({ kind: 'remote', protocol: 'grpc', id: 'mlp-grpc', url: `http://127.0.0.1:${server.grpcPort}`, model: 'mlp', version: '2' }) as RemoteDevice;
    const engine = new InferenceEngine({ devices: [mnistDevice, mlpDevice] });
    try {
      const mnist = await engine.loadGraph(MNIST, { devices: [mnistDevice.id] });
      const mlp = await engine.loadGraph(MLP, { devices: [mlpDevice.id] });
      const results = await Promise.all([
        engine.submit(mnist, { image: { type: 'float32', dims: [3, 1, 28, 28], data: mnistInput(3) } }),
        engine.submit(mlp, mlpFeeds(4)),
        engine.submit(mlp, mlpFeeds(4)),
      ]);
      assertClose(results[0].outputs.logits.data as Float32Array, expected.mnist);
      assertClose(results[1].outputs.output.data as Float32Array, expected.mlp);
      assertClose(results[2].outputs.output.data as Float32Array, expected.mlp);
      assert.equal(results[0].deviceId, mnistDevice.id);
      const stats = mnistDevice.stats();
      assert.equal(stats.transport, 'grpc');
      assert.equal(stats.state, 'up');
      assert.equal(stats.requests, 1);
      assert.equal(stats.bytesSent, 3 * 784 * 4);
      assert.equal(stats.bytesReceived, 3 * 10 * 4);
      assert.equal(stats.serverComputeMs?.count, 1);
      assert.ok(stats.roundTripMs.maxMs >= stats.serverComputeMs!.maxMs, JSON.stringify(stats));
      assert.equal(mlpDevice.stats().requests, 2);
    } finally {
      await engine.close();
    }
  });

  it("the remote device: a server's shape error reaches the caller with the server's words, not retried on another member", async () => {
    const url = `http://127.0.0.1:${server.grpcPort}`;
    const first = createDevice({ kind: 'remote', protocol: 'grpc', id: 'b1-a', url, model: 'mlp-batch1' }) as RemoteDevice;
    const second = createDevice({ kind: 'remote', protocol: 'grpc', id: 'b1-b', url, model: 'mlp-batch1' }) as RemoteDevice;
    const engine = new InferenceEngine({ devices: [first, second] });
    try {
      const g = await engine.loadGraph(MLP);
      await assert.rejects(engine.submit(g, mlpFeeds(2)), (err: Error) => {
        assert.ok(err instanceof InputError, String(err));
        assert.match(err.message, /^inference server http:\/\/127\.0\.0\.1:\d+ refused the request for model 'mlp-batch1' \(gRPC INVALID_ARGUMENT\): input 'input': dim 0 must be 1 \(float32\[1, 64\]\), got \[2, 64\]$/);
        return true;
      });
      assert.equal(first.stats().requests + second.stats().requests, 1);
      assert.deepEqual([first.stats().state, second.stats().state], ['up', 'up']);
    } finally {
      await engine.close();
    }
  });

  it('the remote device: a wrong token fails the load clearly without showing it; a killed server is a clear error, not a hang', async () => {
    const guarded = await startServe(['--models', repo, '--grpc-port', '0', '--workers', '1'], { NCS2_SERVE_TOKEN: 'right-token-123' });
    const url = `http://127.0.0.1:${guarded.grpcPort}`;
    try {
      const wrong = new InferenceEngine({ devices: [createDevice({ kind: 'remote', protocol: 'grpc', id: 'wrong', url, model: 'mlp', token: 'wrong-token-456' })] });
      await assert.rejects(wrong.loadGraph(MLP), (err: Error) => {
        assert.match(err.message, /inference server http:\/\/127\.0\.0\.1:\d+ refused the credentials \(gRPC UNAUTHENTICATED\): check the token or headers of this remote device/);
        assert.doesNotMatch(err.message, /wrong-token-456/);
        return true;
      });
      await wrong.close();

      const device = createDevice({ kind: 'remote', protocol: 'grpc', id: 'right', url, model: 'mlp', token: 'right-token-123', timeoutMs: 5_000 }) as RemoteDevice;
      const engine = new InferenceEngine({ devices: [device], maxRetries: 0 });
      try {
        const g = await engine.loadGraph(MLP);
        assertClose((await engine.submit(g, mlpFeeds(4))).outputs.output.data as Float32Array, expected.mlp);
        assert.doesNotMatch(JSON.stringify([engine.getStats(), device.stats(), device.info]), /right-token-123/);

        guarded.proc.kill('SIGKILL');
        await guarded.exited;
        const started = Date.now();
        await assert.rejects(engine.submit(g, mlpFeeds(1)), /cannot reach inference server http:\/\/127\.0\.0\.1:\d+ over gRPC \(UNAVAILABLE: .*\): is the server running with gRPC on this port, and is the url right\?/);
        assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
        assert.equal(device.stats().state, 'down');

        // restarted on the same gRPC port: a probe finds it and it is back in use
        const restarted = await startServe(['--models', repo, '--grpc-port', String(guarded.grpcPort), '--workers', '1'], { NCS2_SERVE_TOKEN: 'right-token-123' });
        try {
          const upBy = Date.now() + 5_000;
          while (!device.available() && Date.now() < upBy) await new Promise((r) => setTimeout(r, 50));
          assert.equal(device.stats().state, 'up', JSON.stringify(device.stats().down));
          assertClose((await engine.submit(g, mlpFeeds(4))).outputs.output.data as Float32Array, expected.mlp);
        } finally {
          assert.equal(await restarted.stop(), 0, restarted.output());
        }
      } finally {
        await engine.close();
      }
    } finally {
      await guarded.stop();
    }
  });

  it('a full queue is RESOURCE_EXHAUSTED with the reason; the accepted calls are answered; simulated sticks say simulated (simulated sticks)', async () => {
    const server = await startServe(['--models', repo, '--device', 'sim-ncs2', '--queue', '1', '--grpc-port', '0']);
    const client = protoClient(server.grpcPort!);
    try {
      const settled = await Promise.allSettled(Array.from({ length: 40 }, () => infer(client, 16)));
      const busy = settled.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
      const ok = settled.filter((r) => r.status === 'fulfilled');
      assert.ok(busy.length > 0 && ok.length > 0, `OK: ${ok.length}, failed: ${busy.length}`);
      for (const b of busy) {
        assert.equal(grpc.status[(b.reason as grpc.ServiceError).code], 'RESOURCE_EXHAUSTED', String(b.reason));
        assert.match((b.reason as grpc.ServiceError).details, /^server busy: rejected: queue of mnist\/1 is full \(1 waiting/);
      }
      const device = createDevice({ kind: 'remote', protocol: 'grpc', id: 'sim-server', url: `http://127.0.0.1:${server.grpcPort}`, model: 'mnist' }) as RemoteDevice;
      const engine = new InferenceEngine({ devices: [device] });
      await engine.loadGraph(MNIST);
      assert.deepEqual([engine.getStats().simulated, engine.getStats().devices['sim-server'].simulated], [true, true]);
      await engine.close();
    } finally {
      client.close();
      assert.equal(await server.stop(), 0, server.output());
    }
  });

  it('SIGTERM: the calls in flight are answered, then it exits 0 (simulated sticks)', async () => {
    const server = await startServe(['--models', repo, '--device', 'sim-ncs2', '--grpc-port', '0']);
    const client = protoClient(server.grpcPort!);
    try {
      const answered: number[] = [];
      const calls = Array.from({ length: 24 }, () => infer(client, 16).then((a) => (answered.push(performance.now()), a)));
      // in flight = in the server's engine: wait until all 24 were submitted there
      for (;;) {
        const metrics = (await send(`${server.url}/metrics`, 'GET')).body.toString();
        if (/ncs2_tasks_submitted_total\{[^}]*graph="mnist\/1"[^}]*\} 24\b/.test(metrics)) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      const signalledAt = performance.now();
      server.proc.kill('SIGTERM');
      const answers = await Promise.all(calls);
      for (const a of answers) assert.deepEqual((a.outputs as Array<{ shape: number[] }>)[0].shape, [16, 10]);
      assert.ok(answered.some((t) => t > signalledAt), 'no call was still in flight at SIGTERM: the test proved nothing');
      assert.equal(await server.exited, 0, server.output());
    } finally {
      client.close();
      await server.stop();
    }
  });

  it('TLS: with the CA file the remote device works; without it the load fails with a TLS error that says what to give', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-grpc-tls-'));
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=ncs2 test CA');
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
    await fs.writeFile(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'san.ext');
    const server = await startServe(['--models', repo, '--workers', '1', '--grpc-port', '0', '--tls-cert', path.join(dir, 'server.pem'), '--tls-key', path.join(dir, 'server.key')]);
    try {
      const url = `https://127.0.0.1:${server.grpcPort}`;
      const untrusted = new InferenceEngine({ devices: [createDevice({ kind: 'remote', protocol: 'grpc', id: 'no-ca', url, model: 'mlp' })] });
      await assert.rejects(untrusted.loadGraph(MLP), /TLS failure talking to inference server https:\/\/127\.0\.0\.1:\d+ over gRPC \(.+\); give the CA certificate that signed the server's certificate as caFile/);
      await untrusted.close();
      const trusted = new InferenceEngine({ devices: [createDevice({ kind: 'remote', protocol: 'grpc', id: 'ca', url, model: 'mlp', caFile: path.join(dir, 'ca.pem') })] });
      const g = await trusted.loadGraph(MLP);
      assert.deepEqual((await trusted.submit(g, mlpFeeds(4))).outputs.output.dims, [4, 8]);
      await trusted.close();
    } finally {
      assert.equal(await server.stop(), 0, server.output());
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
