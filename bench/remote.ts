/**
 * `npm run bench:remote`: remote members over loopback, against real
 * `ncs2 serve` processes.
 *
 * 1. Scale-out: one engine with 3 remote members, each an `ncs2 serve` with one simulated stick,
 *    against the same engine shape with 1 member (the first of the 3 servers), on an MLP and on a
 *    MobileNetV2-class CNN; 8 requests in flight per member.
 * 2. The cost of going remote on the CPU: the CNN run locally (a CPU device in this process) against
 *    the same model behind `ncs2 serve --device cpu --grpc-port 0` on loopback, over REST (binary
 *    tensors) and over gRPC (raw tensors); and the MLP at one request in flight, whose latency
 *    difference is the per-request overhead of the round trip.
 *
 * Configurations alternate round by round (paired: ABBA...), each reports its median over rounds.
 * Client and servers share this host's cores. Options (environment): BENCH_ROUNDS (default 3),
 * BENCH_SECONDS per round (default 3), BENCH_OUT (default bench/results/remote.json).
 */
import { spawn, type ChildProcess } from 'child_process';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { buildMlp, buildMobileNetLike, CpuDevice, createDevice, InferenceEngine, type Device, type GraphHandle, type RemoteDevice, type TensorData } from '../src/engine';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const OUT = process.env.BENCH_OUT ?? path.join(__dirname, '..', '..', 'bench', 'results', 'remote.json');
const CLI = path.join(__dirname, '..', 'src', 'cli', 'ncs2.js');
const IN_FLIGHT_PER_MEMBER = 8;
const MODELS = {
  mlp: { description: '784-128-10 MLP', bytes: buildMlp({ inputSize: 784, hidden: [128], outputSize: 10, seed: 3 }), input: 'input', dims: [1, 784] },
  cnn: { description: 'MobileNetV2-like CNN, 224x224x3', bytes: buildMobileNetLike({ inputSize: 224 }), input: 'input', dims: [1, 3, 224, 224] },
};
type ModelName = keyof typeof MODELS;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function feeds(model: ModelName): Record<string, TensorData> {
  const m = MODELS[model];
  const data = new Float32Array(m.dims.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = ((i * 7) % 13) / 13;
  return { [m.input]: { type: 'float32', dims: m.dims, data } };
}

/** A closed loop of `inFlight` submitters for `seconds`: completions per second and the median latency. */
async function closedLoop(engine: InferenceEngine, graph: GraphHandle, model: ModelName, inFlight: number, seconds: number): Promise<{ perSec: number; p50Ms: number }> {
  const latencies: number[] = [];
  const started = performance.now();
  const end = started + seconds * 1000;
  const submitter = async () => {
    while (performance.now() < end) {
      const t = performance.now();
      await engine.submit(graph, feeds(model));
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, submitter));
  return { perSec: latencies.length / ((performance.now() - started) / 1000), p50Ms: median(latencies) };
}

interface Server {
  url: string;
  /** http://host:port of the gRPC API, when started with --grpc-port. */
  grpcUrl?: string;
  proc: ChildProcess;
}

function serve(repo: string, args: string[]): Promise<Server> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--models', repo, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    proc.once('exit', (code) => reject(new Error(`ncs2 serve exited (${code}): ${out}`)));
    proc.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      // the gRPC line comes before the REST one
      const grpcLine = /gRPC on (\S+)/.exec(out);
      if (m) resolve({ url: m[1], grpcUrl: grpcLine ? `http://${grpcLine[1]}` : undefined, proc });
    });
  });
}

interface Config {
  name: string;
  engine: InferenceEngine;
  graph: GraphHandle;
  inFlight: number;
  rounds: Array<{ perSec: number; p50Ms: number }>;
}

async function config(name: string, devices: Device[], model: ModelName, inFlight: number): Promise<Config> {
  const engine = new InferenceEngine({ devices, queueCapacity: 4096 });
  const graph = await engine.loadGraph(MODELS[model].bytes, { name: model });
  await closedLoop(engine, graph, model, inFlight, 1); // warm-up
  return { name, engine, graph, inFlight, rounds: [] };
}

/** Alternates the configurations round by round (A B, B A, ...). */
async function paired(model: ModelName, configs: Config[]): Promise<void> {
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? configs : [...configs].reverse();
    for (const c of order) c.rounds.push(await closedLoop(c.engine, c.graph, model, c.inFlight, SECONDS));
  }
}

function summary(c: Config) {
  return { inFlight: c.inFlight, perSecMedian: median(c.rounds.map((x) => x.perSec)), p50MsMedian: median(c.rounds.map((x) => x.p50Ms)), rounds: c.rounds };
}

function remote(id: string, url: string, model: ModelName, protocol: 'rest' | 'grpc' = 'rest'): RemoteDevice {
  return createDevice({ kind: 'remote', id, url, model, protocol, maxInFlight: IN_FLIGHT_PER_MEMBER }) as RemoteDevice;
}

async function main(): Promise<void> {
  const repo = await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-bench-remote-'));
  for (const [name, m] of Object.entries(MODELS)) {
    await fs.mkdir(path.join(repo, name, '1'), { recursive: true });
    await fs.writeFile(path.join(repo, name, '1', 'model.onnx'), m.bytes);
  }
  const servers: Server[] = [];
  const result: Record<string, unknown> = {
    benchmark: 'remote',
    command: 'npm run bench:remote',
    date: new Date().toISOString(),
    host: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version, loadAverage: os.loadavg() },
    method: `configurations alternate round by round; ${ROUNDS} rounds of ${SECONDS} s after a 1 s warm-up; medians over rounds; client and every server on this host, over loopback`,
  };
  try {
    // 1. scale-out over simulated sticks
    const sticks = await Promise.all([0, 1, 2].map(() => serve(repo, ['--device', 'sim-ncs2', '--devices', '1'])));
    servers.push(...sticks);
    const scaleOut: Record<string, unknown> = { simulated: true, servers: '3 x ncs2 serve --device sim-ncs2 --devices 1' };
    for (const model of ['mlp', 'cnn'] as const) {
      const oneDevices = [remote('stick-0', sticks[0].url, model)];
      const threeDevices = sticks.map((s, i) => remote(`stick-${i}`, s.url, model));
      const one = await config('1 member', oneDevices, model, IN_FLIGHT_PER_MEMBER);
      const three = await config('3 members', threeDevices, model, 3 * IN_FLIGHT_PER_MEMBER);
      await paired(model, [one, three]);
      // the stick's own (simulated) time per request against the round trip: where the time goes
      const where = (devices: RemoteDevice[]) => devices.map((d) => ({ member: d.id, roundTripMsP50: d.stats().roundTripMs.p50, stickComputeMsP50: d.stats().serverComputeMs?.p50 ?? null, serverQueueMsP50: d.stats().serverQueueMs?.p50 ?? null }));
      const a = { ...summary(one), members: where(oneDevices) };
      const b = { ...summary(three), members: where(threeDevices) };
      scaleOut[model] = { model: MODELS[model].description, oneMember: a, threeMembers: b, speedup: b.perSecMedian / a.perSecMedian };
      console.log(`scale-out ${model}: 1 member ${a.perSecMedian.toFixed(1)}/s, 3 members ${b.perSecMedian.toFixed(1)}/s = ${(b.perSecMedian / a.perSecMedian).toFixed(2)}x [simulated sticks]`);
      await Promise.all([one.engine.close(), three.engine.close()]);
    }
    result.scaleOut = scaleOut;
    for (const s of sticks) s.proc.kill('SIGTERM');

    // 2. the cost of going remote on the CPU
    const cpuServer = await serve(repo, ['--device', 'cpu', '--grpc-port', '0']);
    servers.push(cpuServer);
    const cost: Record<string, unknown> = { simulated: false, server: 'ncs2 serve --device cpu --grpc-port 0 (default workers and threads)', local: 'CpuDevice with default workers and threads, in the client process' };
    for (const [model, inFlight] of [['cnn', 4], ['mlp', 1]] as const) {
      const rest = remote('cpu-server', cpuServer.url, model);
      const grpc = remote('cpu-server-grpc', cpuServer.grpcUrl!, model, 'grpc');
      const local = await config('local', [new CpuDevice({ id: 'local' })], model, inFlight);
      const overRest = await config('remote', [rest], model, inFlight);
      const overGrpc = await config('remote gRPC', [grpc], model, inFlight);
      await paired(model, [local, overRest, overGrpc]);
      const a = summary(local);
      const far = (c: Config, device: RemoteDevice) => {
        const b = summary(c);
        const s = device.stats();
        return {
          ...b,
          throughputRatio: b.perSecMedian / a.perSecMedian,
          extraLatencyUsAtP50: (b.p50MsMedian - a.p50MsMedian) * 1000,
          remoteRoundTripMsP50: s.roundTripMs.p50,
          serverComputeMsP50: s.serverComputeMs?.p50 ?? null,
          transport: s.transport,
        };
      };
      const b = far(overRest, rest);
      const g = far(overGrpc, grpc);
      cost[model] = { model: MODELS[model].description, local: a, remote: b, remoteGrpc: g };
      console.log(
        `remote cost ${model} (${inFlight} in flight): local ${a.perSecMedian.toFixed(1)}/s p50 ${a.p50MsMedian.toFixed(3)} ms, ` +
          `remote REST ${b.perSecMedian.toFixed(1)}/s p50 ${b.p50MsMedian.toFixed(3)} ms (ratio ${b.throughputRatio.toFixed(2)}), ` +
          `remote gRPC ${g.perSecMedian.toFixed(1)}/s p50 ${g.p50MsMedian.toFixed(3)} ms (ratio ${g.throughputRatio.toFixed(2)})`,
      );
      await Promise.all([local.engine.close(), overRest.engine.close(), overGrpc.engine.close()]);
    }
    result.costOfRemote = cost;
  } finally {
    for (const s of servers) if (s.proc.exitCode === null) s.proc.kill('SIGTERM');
    await fs.rm(repo, { recursive: true, force: true });
  }
  await fs.mkdir(path.dirname(OUT), { recursive: true });
  await fs.writeFile(OUT, JSON.stringify(result, null, 2) + '\n');
  console.log(`written to ${OUT}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
