/**
 * Real `ncs2 serve` processes on loopback for the remote tests, a model repository to serve, and a
 * plain HTTP client that shows every byte of an answer.
 */
import { spawn, type ChildProcess } from 'child_process';
import { promises as fs } from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { buildMlp } from '../../src/engine';
import { DataType, encodeModel, makeInt64Tensor, makeModel, makeNode, makeValueInfo } from '../../src/engine/graph/onnx';

export const CLI = path.resolve(__dirname, '../../src/cli/ncs2.js');
export const MNIST = path.resolve(__dirname, '../../../models/mnist/mnist-cnn.onnx');
export const MLP = buildMlp({ inputSize: 64, hidden: [32], outputSize: 8, seed: 7 });

/**
 * The model the spec's inference examples describe, with types this engine has: input0 [2, 2]
 * (INT32 here, UINT32 in the spec), input1 BOOL [3], output0 FP32 [3, 2]. output0[i][j] =
 * input1[i] + (column j's sum of input0).
 */
export function buildSpecExampleModel(): Uint8Array {
  const graph = {
    name: 'spec-example',
    node: [
      makeNode('Cast', ['input0'], ['input0_f'], { to: { int: DataType.FLOAT } }),
      makeNode('ReduceSum', ['input0_f', 'axis0'], ['column_sums'], { keepdims: { int: 1 } }),
      makeNode('Cast', ['input1'], ['input1_f'], { to: { int: DataType.FLOAT } }),
      makeNode('Unsqueeze', ['input1_f', 'axis1'], ['input1_col']),
      makeNode('Add', ['input1_col', 'column_sums'], ['output0']),
    ],
    initializer: [makeInt64Tensor('axis0', [1], [0]), makeInt64Tensor('axis1', [1], [1])],
    input: [makeValueInfo('input0', DataType.INT32, [2, 2]), makeValueInfo('input1', DataType.BOOL, [3])],
    output: [makeValueInfo('output0', DataType.FLOAT, [3, 2])],
  };
  return encodeModel(makeModel(graph));
}

/** A model repository as Triton and OVMS lay it out: mnist/1, mlp/1 and mlp/2, mymodel/1 (the spec's example), mlp-batch1/1. */
export async function makeRepository(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ncs2-serve-repo-'));
  const put = async (name: string, version: string, bytes: Uint8Array) => {
    await fs.mkdir(path.join(dir, name, version), { recursive: true });
    await fs.writeFile(path.join(dir, name, version, 'model.onnx'), bytes);
  };
  await put('mnist', '1', await fs.readFile(MNIST));
  await put('mlp', '1', MLP);
  await put('mlp', '2', MLP);
  await put('mymodel', '1', buildSpecExampleModel());
  // the MLP with its batch fixed at 1: a client holding the symbolic-batch file meets the server's shape check
  await put('mlp-batch1', '1', buildMlp({ inputSize: 64, hidden: [32], outputSize: 8, seed: 7, batch: 1 }));
  return dir;
}

export interface ServerProcess {
  url: string;
  port: number;
  /** With --grpc-port: the bound gRPC port (printed before the REST address). */
  grpcPort?: number;
  proc: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or the signal that ended it). */
  exited: Promise<number | string>;
  stop(): Promise<number | string>;
}

/** Starts `ncs2 serve --port 0 ...` (unless args give a port) and waits for the line that gives its address. */
export function startServe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const proc = spawn(process.execPath, [CLI, 'serve', ...(args.includes('--port') ? [] : ['--port', '0']), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ncs2 serve did not start within 60 s:\n${out}`)), 60_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = /listening on (https?:\/\/127\.0\.0\.1:(\d+))/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      const grpcLine = /gRPC on 127\.0\.0\.1:(\d+)/.exec(out);
      const server: ServerProcess = {
        url: m[1],
        port: Number(m[2]),
        grpcPort: grpcLine ? Number(grpcLine[1]) : undefined,
        proc,
        output: () => out,
        exited,
        stop: async () => {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
          return exited;
        },
      };
      resolve(server);
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`ncs2 serve exited (${code}) before listening:\n${out}`));
    });
  });
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json(): Record<string, unknown>;
}

const agent = new http.Agent({ keepAlive: false });

/** One HTTP request; the whole answer, whatever its status. */
export function send(url: string, method: string, body?: Buffer | string, headers: http.OutgoingHttpHeaders = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const data = Buffer.concat(chunks);
        resolve({ status: res.statusCode!, headers: res.headers, body: data, json: () => JSON.parse(data.toString()) as Record<string, unknown> });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
