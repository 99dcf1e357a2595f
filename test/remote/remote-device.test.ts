import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import { promises as fs } from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { CpuDevice, InferenceEngine, InputError, RemoteDevice, createDevice, type RemoteDeviceSpec, type TensorData } from '../../src/engine';
import { MLP, MNIST, makeRepository, startServe, type ServerProcess } from './servers';

function mnistFeeds(batch: number, seed = 1): Record<string, TensorData> {
  const data = new Float32Array(batch * 784);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 31 + seed * 17) % 251) / 251;
  return { image: { type: 'float32', dims: [batch, 1, 28, 28], data } };
}

function mlpFeeds(batch: number, seed = 1): Record<string, TensorData> {
  const data = new Float32Array(batch * 64);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37 + seed);
  return { input: { type: 'float32', dims: [batch, 64], data } };
}

function remote(spec: Omit<RemoteDeviceSpec, 'kind'>): RemoteDevice {
  return createDevice({ kind: 'remote', ...spec }) as RemoteDevice;
}

function assertClose(actual: TensorData, expected: TensorData): void {
  assert.deepEqual(actual.dims, expected.dims);
  const a = actual.data as Float32Array;
  const e = expected.data as Float32Array;
  assert.equal(a.length, e.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - e[i]) <= 1e-5 * Math.max(1, Math.abs(e[i])), `element ${i}: ${a[i]} vs ${e[i]}`);
}

describe('remote device against real ncs2 serve processes', function () {
  this.timeout(120_000);
  let repo: string;
  let server: ServerProcess;
  let local: InferenceEngine;
  const expected: Record<string, Record<string, TensorData>> = {};

  before(async () => {
    repo = await makeRepository();
    server = await startServe(['--models', repo, '--workers', '1']);
    // the same models run on this host: what the remote answers must match
    local = new InferenceEngine({ devices: [new CpuDevice({ id: 'local', workers: 1 })] });
    const mnist = await local.loadGraph(MNIST);
    expected.mnist = (await local.submit(mnist, mnistFeeds(3))).outputs;
    const mlp = await local.loadGraph(MLP);
    expected.mlp = (await local.submit(mlp, mlpFeeds(4))).outputs;
  });

  after(async () => {
    await local?.close();
    if (server) assert.equal(await server.stop(), 0, server.output());
    await fs.rm(repo, { recursive: true, force: true });
  });

  for (const binary of [true, false]) {
    const transport = binary ? 'binary' : 'JSON';
    it(`${transport} tensors: mnist and an MLP give the numbers local inference gives, with round trip and server compute time`, async () => {
      const mnistDevice = remote({ id: `mnist-${transport}`, url: server.url, model: 'mnist', binary });
      const mlpDevice = remote({ id: `mlp-${transport}`, url: server.url, model: 'mlp', version: '2', binary });
      const engine = new InferenceEngine({ devices: [mnistDevice, mlpDevice] });
      try {
        const mnist = await engine.loadGraph(MNIST, { devices: [mnistDevice.id] });
        const mlp = await engine.loadGraph(MLP, { devices: [mlpDevice.id] });
        const a = await engine.submit(mnist, mnistFeeds(3));
        const b = await engine.submit(mlp, mlpFeeds(4));
        assertClose(a.outputs.logits, expected.mnist.logits);
        assertClose(b.outputs.output, expected.mlp.output);
        assert.equal(a.deviceId, mnistDevice.id);
        const stats = mnistDevice.stats();
        assert.equal(stats.transport, binary ? 'binary' : 'json');
        assert.equal(stats.state, 'up');
        assert.equal(stats.requests, 1);
        assert.equal(stats.roundTripMs.count, 1);
        assert.equal(stats.serverComputeMs?.count, 1);
        assert.ok(stats.roundTripMs.maxMs >= stats.serverComputeMs!.maxMs, JSON.stringify(stats));
        // binary sends 3 x 784 floats as 4 bytes each; JSON writes each as text
        if (binary) assert.ok(stats.bytesSent > 3 * 784 * 4 && stats.bytesSent < 3 * 784 * 4 + 1000, String(stats.bytesSent));
        assert.equal(engine.getStats().devices[mnistDevice.id].kind, 'remote');
      } finally {
        await engine.close();
      }
    });
  }

  it("a server's shape error reaches the caller with the server's words, and is not retried on another member", async () => {
    // the local file says batch N, the server's model is fixed at batch 1
    const first = remote({ id: 'batch1-a', url: server.url, model: 'mlp-batch1' });
    const second = remote({ id: 'batch1-b', url: server.url, model: 'mlp-batch1' });
    const engine = new InferenceEngine({ devices: [first, second] });
    try {
      const g = await engine.loadGraph(MLP);
      assert.equal((await engine.submit(g, mlpFeeds(1))).outputs.output.dims[1], 8);
      await assert.rejects(engine.submit(g, mlpFeeds(2)), (err: Error) => {
        assert.ok(err instanceof InputError, String(err));
        assert.match(err.message, /^inference server http:\/\/127\.0\.0\.1:\d+ refused the request for model 'mlp-batch1' \(HTTP 400\): input 'input': dim 0 must be 1 \(float32\[1, 64\]\), got \[2, 64\]$/);
        return true;
      });
      // one good request, one refused: the caller's data is wrong everywhere, so no second try
      assert.equal(first.stats().requests + second.stats().requests, 2);
      assert.equal(first.stats().failed + second.stats().failed, 1);
      assert.deepEqual([first.stats().state, second.stats().state], ['up', 'up']);
    } finally {
      await engine.close();
    }
  });

  it('a server model that does not match the local file fails the load, saying how', async () => {
    const engine = new InferenceEngine({ devices: [remote({ id: 'wrong-model', url: server.url, model: 'mnist' })] });
    try {
      await assert.rejects(engine.loadGraph(MLP), /model 'mnist' on inference server http:\/\/127\.0\.0\.1:\d+ has no input 'input' \(the local model file has it\); the server's inputs are 'image'/);
      const missing = new InferenceEngine({ devices: [remote({ id: 'no-such', url: server.url, model: 'nosuchmodel' })] });
      await assert.rejects(missing.loadGraph(MLP), /model 'nosuchmodel' is not ready on inference server http:\/\/127\.0\.0\.1:\d+ \(HTTP 400\); check the name and version it serves/);
      await missing.close();
    } finally {
      await engine.close();
    }
  });

  it('an unreachable endpoint fails the load at once with a clear error', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const engine = new InferenceEngine({ devices: [remote({ id: 'gone', url: `http://127.0.0.1:${port}`, model: 'mlp' })] });
    try {
      await assert.rejects(engine.loadGraph(MLP), new RegExp(`cannot reach inference server http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\): is the server running, and is the url right\\?`));
    } finally {
      await engine.close();
    }
  });

  it('a server that accepts and never answers fails the load after timeoutMs, not never', async () => {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as net.AddressInfo).port;
    const engine = new InferenceEngine({ devices: [remote({ id: 'silent', url: `http://127.0.0.1:${port}`, model: 'mlp', timeoutMs: 300 })] });
    const started = performance.now();
    try {
      await assert.rejects(engine.loadGraph(MLP), /inference server http:\/\/127\.0\.0\.1:\d+ did not answer within 300 ms \(timeoutMs\)/);
      assert.ok(performance.now() - started < 5_000);
    } finally {
      await engine.close();
      silent.close();
    }
  });

  it('bad specs are refused when the device is made', () => {
    assert.throws(() => remote({ url: 'ftp://x', model: 'm' }), /url must start with http:\/\/ or https:\/\/, got 'ftp:'/);
    assert.throws(() => remote({ url: 'http://user:pw@host:1', model: 'm' }), /put credentials in the token or headers, not in the url/);
    assert.throws(() => remote({ url: 'http://h:1', model: '' }), /model \(the model name on the server\) is required/);
    assert.throws(() => remote({ url: 'http://h:1', model: 'm', maxInFlight: 0 }), /maxInFlight must be a positive integer, got 0/);
    assert.throws(() => remote({ url: 'https://h:1', model: 'm', caFile: '/nonexistent/ca.pem' }), /cannot read caFile \/nonexistent\/ca\.pem: ENOENT; expected a PEM certificate file/);
  });
});

describe('remote device: credentials and TLS', function () {
  this.timeout(120_000);
  let repo: string;
  let dir: string;

  before(async () => {
    repo = await makeRepository();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-remote-tls-'));
  });

  after(async () => {
    await fs.rm(repo, { recursive: true, force: true });
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('a wrong token fails the load clearly and never shows the token; the right one works', async () => {
    const server = await startServe(['--models', repo, '--workers', '1'], { NCS2_SERVE_TOKEN: 'right-token-123' });
    try {
      const wrong = new InferenceEngine({ devices: [remote({ id: 'wrong', url: server.url, model: 'mlp', token: 'wrong-token-456', headers: { 'x-api-key': 'hidden-789' } })] });
      await assert.rejects(wrong.loadGraph(MLP), (err: Error) => {
        assert.match(err.message, /inference server http:\/\/127\.0\.0\.1:\d+ refused the credentials \(HTTP 401\): check the token or headers of this remote device/);
        assert.doesNotMatch(err.message, /wrong-token-456|hidden-789/);
        return true;
      });
      assert.doesNotMatch(JSON.stringify(wrong.getStats()), /wrong-token-456|hidden-789/);
      await wrong.close();
      const device = remote({ id: 'right', url: server.url, model: 'mlp', token: 'right-token-123' });
      const right = new InferenceEngine({ devices: [device] });
      const g = await right.loadGraph(MLP);
      assert.equal((await right.submit(g, mlpFeeds(2))).outputs.output.dims[0], 2);
      assert.doesNotMatch(JSON.stringify([right.getStats(), device.stats(), device.info]), /right-token-123/);
      await right.close();
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });

  it('https with a CA file works; without it the load fails with a TLS error that says what to give', async () => {
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=ncs2 test CA');
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
    await fs.writeFile(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'san.ext');
    const server = await startServe(['--models', repo, '--workers', '1', '--tls-cert', path.join(dir, 'server.pem'), '--tls-key', path.join(dir, 'server.key')]);
    try {
      assert.match(server.url, /^https:/);
      const untrusted = new InferenceEngine({ devices: [remote({ id: 'no-ca', url: server.url, model: 'mlp' })] });
      await assert.rejects(untrusted.loadGraph(MLP), /TLS failure talking to inference server https:\/\/127\.0\.0\.1:\d+ \(\w+: .*\); give the CA certificate that signed the server's certificate as caFile/);
      await untrusted.close();
      const trusted = new InferenceEngine({ devices: [remote({ id: 'ca', url: server.url, model: 'mlp', caFile: path.join(dir, 'ca.pem') })] });
      const g = await trusted.loadGraph(MLP);
      assert.equal((await trusted.submit(g, mlpFeeds(1))).outputs.output.dims[1], 8);
      await trusted.close();
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });
});

describe('remote device: the per-endpoint in-flight limit', function () {
  this.timeout(120_000);
  let repo: string;
  let server: ServerProcess;

  before(async () => {
    repo = await makeRepository();
    // a server that answers 503 to a third request at once: what a member sending more than 2 meets
    server = await startServe(['--models', repo, '--device', 'sim-ncs2', '--max-requests', '2']);
  });

  after(async () => {
    if (server) assert.equal(await server.stop(), 0, server.output());
    await fs.rm(repo, { recursive: true, force: true });
  });

  for (const [maxInFlight, refusedExpected] of [[2, false], [8, true]] as const) {
    it(`maxInFlight ${maxInFlight}: ${refusedExpected ? 'more at once than the server takes, so some are refused' : 'never more at once than that, so every one of 24 tasks is answered'}`, async () => {
      const device = remote({ id: `limit-${maxInFlight}`, url: server.url, model: 'mnist', maxInFlight });
      const engine = new InferenceEngine({ devices: [device] });
      try {
        const g = await engine.loadGraph(MNIST);
        const results = await Promise.allSettled(Array.from({ length: 24 }, (_, i) => engine.submit(g, mnistFeeds(8, i))));
        const refused = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
        if (refusedExpected) {
          assert.ok(refused.length > 0, 'the server never saw more than 2 at once: the test cannot tell the limit works');
          assert.match(refused[0], /HTTP 503: server busy: 2 requests in progress \(limit 2\)/);
        } else {
          assert.deepEqual(refused, []);
        }
        assert.ok(engine.getStats().devices[device.id].maxInFlight === maxInFlight);
      } finally {
        await engine.close();
      }
    });
  }
});
