/**
 * `ncs2 serve`: this engine over the Open Inference Protocol (KServe v2) REST API, with Triton's
 * binary tensor data extension, and optionally its gRPC API (@grpc/grpc-js), so another box's
 * engine (a `remote` device), Triton's and KServe's clients can use its devices.
 *
 * node:http, no framework: the API is six routes, and the work a framework would do (routing,
 * JSON body parsing) must here be bounded and binary-aware anyway (a body is a JSON object followed
 * by raw tensor bytes, split at Inference-Header-Content-Length), so it is done by hand in one place.
 */
import * as grpc from '@grpc/grpc-js';
import * as http from 'http';
import * as https from 'https';
import { timingSafeEqual } from 'crypto';
import { promises as fs, readFileSync } from 'fs';
import * as path from 'path';
import { parseArgs } from 'util';
import {
  COMPUTE_MS_PARAMETER,
  COMPUTE_US_PARAMETER,
  DeadlineExceededError,
  EngineClosedError,
  INFERENCE_HEADER_LENGTH,
  InferenceEngine,
  InputError,
  PrometheusExporter,
  QUEUE_MS_PARAMETER,
  QUEUE_US_PARAMETER,
  QueueFullError,
  SIMULATED_METADATA_KEY,
  assembleBody,
  createDevice,
  decodeRawTensors,
  decodeTensors,
  encodeRawTensor,
  encodeTensor,
  inferenceService,
  splitBody,
  tensorMetadata,
  type DeviceSpec,
  type Feeds,
  type GraphHandle,
  type GrpcInferRequest,
  type GrpcInferResponse,
  type TaskResult,
  type TensorData,
  type InferRequestJson,
  type InferResponseJson,
  type ModelMetadata,
} from '../engine';

export interface ServeOptions {
  /** A model repository laid out as Triton and OVMS lay it out: <name>/<version>/model.onnx. */
  modelRepository: string;
  /** 0 picks a free port (the bound one is in RunningServer.port). Default 8000, Triton's HTTP port. */
  port?: number;
  /** Default 127.0.0.1; 0.0.0.0 serves other machines. */
  host?: string;
  /** Also serve the gRPC API on this port (0 picks a free one; the bound one is in RunningServer.grpcPort). Default: no gRPC. */
  grpcPort?: number;
  devices: DeviceSpec[];
  /** Largest request body accepted (bytes); larger ones get 413 (gRPC: RESOURCE_EXHAUSTED). Default 64 MiB. */
  maxBodyBytes?: number;
  /** Requests being read or run at once; more get 503 before their body is read. Default 256. */
  maxRequests?: number;
  /** Requests waiting per model in the engine's queue; more get 503. Default 64. */
  queueCapacity?: number;
  /** When set, model metadata and inference need `Authorization: Bearer <token>` (health and /metrics stay open, for probes and scrapers). */
  token?: string;
  /** TLS certificate and key (PEM files): serve HTTPS. */
  tls?: { certFile: string; keyFile: string };
  log?: (line: string) => void;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  /** The gRPC port, when grpcPort was given. */
  readonly grpcPort?: number;
  readonly engine: InferenceEngine;
  /** Loaded models as name -> versions. */
  readonly models: Record<string, string[]>;
  /** Stops accepting, answers the requests in flight, closes the engine. */
  close(): Promise<void>;
}

interface ServedModel {
  name: string;
  version: string;
  graph: GraphHandle;
}

const SERVER_NAME = 'ncs2-serve';

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.resolve(__dirname, '../../../package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** An error with the HTTP status to answer it with. */
class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const GRPC_CODE_OF_HTTP: Record<number, grpc.status> = {
  400: grpc.status.INVALID_ARGUMENT,
  401: grpc.status.UNAUTHENTICATED,
  404: grpc.status.NOT_FOUND,
  413: grpc.status.RESOURCE_EXHAUSTED,
  503: grpc.status.UNAVAILABLE,
};

/** The status and words of a failed call, shared by REST and gRPC so both say the same thing. */
function describeFailure(err: unknown): { status: number; grpcCode: grpc.status; message: string } {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof HttpError) return { status: err.status, grpcCode: GRPC_CODE_OF_HTTP[err.status] ?? grpc.status.UNKNOWN, message };
  if (err instanceof InputError) return { status: 400, grpcCode: grpc.status.INVALID_ARGUMENT, message };
  if (err instanceof QueueFullError) return { status: 503, grpcCode: grpc.status.RESOURCE_EXHAUSTED, message: `server busy: ${message.split(';')[0]}; retry later, or add devices to this server` };
  if (err instanceof EngineClosedError) return { status: 503, grpcCode: grpc.status.UNAVAILABLE, message };
  if (err instanceof DeadlineExceededError) return { status: 504, grpcCode: grpc.status.DEADLINE_EXCEEDED, message };
  return { status: 500, grpcCode: grpc.status.INTERNAL, message };
}

function bearerMatches(header: string | undefined, token: string): boolean {
  const sent = Buffer.from(header ?? '');
  const wanted = Buffer.from(`Bearer ${token}`);
  return sent.length === wanted.length && timingSafeEqual(sent, wanted);
}

/** The versions under each model folder that hold a model.onnx; a repository with none is an error. */
export async function scanModelRepository(dir: string): Promise<Array<{ name: string; version: string; file: string }>> {
  let names: string[];
  try {
    names = (await fs.readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch (err) {
    throw new Error(`cannot read the model repository ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; expected a folder of <name>/<version>/model.onnx`, { cause: err });
  }
  const found: Array<{ name: string; version: string; file: string }> = [];
  for (const name of names) {
    const versions = (await fs.readdir(path.join(dir, name), { withFileTypes: true })).filter((e) => e.isDirectory() && /^\d+$/.test(e.name)).map((e) => e.name);
    for (const version of versions.sort((a, b) => Number(a) - Number(b))) {
      const file = path.join(dir, name, version, 'model.onnx');
      if (await fs.stat(file).then((s) => s.isFile(), () => false)) found.push({ name, version, file });
    }
  }
  if (found.length === 0) throw new Error(`no models in ${dir}: expected <name>/<version>/model.onnx (for example mnist/1/model.onnx)`);
  return found;
}

/** Starts the server once every model is loaded on the devices. */
export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const log = options.log ?? (() => undefined);
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024 * 1024;
  const maxRequests = options.maxRequests ?? 256;
  const repository = await scanModelRepository(options.modelRepository);
  const engine = new InferenceEngine({ devices: options.devices.map((spec) => createDevice(spec)), queueCapacity: options.queueCapacity ?? 64, queuePolicy: 'reject' });
  const served = new Map<string, ServedModel[]>();
  try {
    for (const entry of repository) {
      const graph = await engine.loadGraph(entry.file, { name: `${entry.name}/${entry.version}` });
      const list = served.get(entry.name) ?? [];
      list.push({ name: entry.name, version: entry.version, graph });
      served.set(entry.name, list);
    }
  } catch (err) {
    await engine.close();
    throw err;
  }
  const exporter = new PrometheusExporter(() => engine);
  const serverVersion = packageVersion();
  const simulated = engine.listDevices().some((d) => d.info.simulated);
  let inProgress = 0;
  let draining = false;
  let drained: (() => void) | undefined;

  function findModel(name: string, version: string | undefined): ServedModel {
    const versions = served.get(name);
    if (!versions) throw new HttpError(404, `unknown model '${name}'; this server has ${[...served.keys()].map((n) => `'${n}'`).join(', ')}`);
    // no version asked: the highest, as Triton's and OVMS's default version policy serves
    if (version === undefined) return versions[versions.length - 1];
    const found = versions.find((v) => v.version === version);
    if (!found) throw new HttpError(404, `model '${name}' has no version '${version}'; it has ${versions.map((v) => v.version).join(', ')}`);
    return found;
  }

  function metadata(model: ServedModel): ModelMetadata {
    const info = model.graph.info;
    return {
      name: model.name,
      versions: served.get(model.name)!.map((v) => v.version),
      platform: 'onnx_onnxv1',
      inputs: info.inputs.map((t) => tensorMetadata(t.name, t.type, t.dims)),
      outputs: info.outputs.map((t) => tensorMetadata(t.name, t.type, t.dims)),
    };
  }

  function readBody(req: http.IncomingMessage): Promise<Buffer> {
    const declared = Number(req.headers['content-length']);
    if (declared > maxBodyBytes) return Promise.reject(new HttpError(413, `request body of ${declared} bytes is larger than this server's limit of ${maxBodyBytes} bytes (ncs2 serve --max-body-mb)`));
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBodyBytes) {
          reject(new HttpError(413, `request body is larger than this server's limit of ${maxBodyBytes} bytes (ncs2 serve --max-body-mb)`));
          req.pause();
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });
  }

  /** Runs decoded inputs on a model after checking the requested outputs (REST and gRPC). */
  async function run(model: ServedModel, inputs: Array<TensorData & { name: string }>, requested: Array<{ name?: unknown }>): Promise<TaskResult> {
    const feeds: Feeds = {};
    for (const t of inputs) {
      if (feeds[t.name]) throw new InputError(`input '${t.name}' is given twice`);
      feeds[t.name] = { type: t.type, dims: t.dims, data: t.data };
    }
    const outputNames = model.graph.info.outputs.map((o) => o.name);
    for (const o of requested) {
      if (typeof o?.name !== 'string' || !outputNames.includes(o.name)) throw new InputError(`unknown output ${JSON.stringify(o?.name)}; model '${model.name}' has outputs ${outputNames.map((n) => `'${n}'`).join(', ')}`);
    }
    return engine.submit(model.graph, feeds);
  }

  async function infer(model: ServedModel, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const { json, binary } = splitBody(await readBody(req), req.headers[INFERENCE_HEADER_LENGTH]);
    const request = json as InferRequestJson;
    if (request.id !== undefined && typeof request.id !== 'string') throw new InputError(`"id" must be a string, got ${JSON.stringify(request.id)}`);
    const inputs = decodeTensors(request.inputs, binary, 'input');
    const requested: NonNullable<InferRequestJson['outputs']> = request.outputs ?? model.graph.info.outputs.map((o) => ({ name: o.name }));
    if (!Array.isArray(requested)) throw new InputError(`"outputs" must be an array of {name}, got ${JSON.stringify(requested).slice(0, 80)}`);
    const result = await run(model, inputs, requested);
    const allBinary = request.parameters?.binary_data_output === true;
    const binaryOut: Uint8Array[] = [];
    const response: InferResponseJson = {
      model_name: model.name,
      model_version: model.version,
      ...(request.id !== undefined ? { id: request.id } : {}),
      parameters: { [COMPUTE_MS_PARAMETER]: result.timings.inferMs, [QUEUE_MS_PARAMETER]: result.timings.queueMs + result.timings.deviceQueueMs },
      outputs: requested.map((o) => encodeTensor(o.name, result.outputs[o.name], (o.parameters?.binary_data ?? allBinary) === true, binaryOut)),
    };
    const { body, headerLength } = assembleBody(response, binaryOut);
    const headers: http.OutgoingHttpHeaders = { 'content-type': headerLength === undefined ? 'application/json' : 'application/octet-stream', 'content-length': body.length };
    if (headerLength !== undefined) headers[INFERENCE_HEADER_LENGTH] = headerLength;
    res.writeHead(200, headers).end(body);
  }

  function sendJson(res: http.ServerResponse, status: number, body: object, extra: http.OutgoingHttpHeaders = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...extra }).end(text);
  }

  /** Health answers: 200 for true, 400 (a 4xx, as the spec asks) for false, empty bodies. */
  function sendHealth(res: http.ServerResponse, ok: boolean): void {
    res.writeHead(ok ? 200 : 400, { 'content-length': 0 }).end();
  }

  function sendError(res: http.ServerResponse, err: unknown): void {
    const { status, message } = describeFailure(err);
    const extra: http.OutgoingHttpHeaders = {};
    if (err instanceof QueueFullError) extra['retry-after'] = '1';
    // a body left unread (413, busy) cannot be followed by another request on this connection
    if (status === 413 || status === 503) extra.connection = 'close';
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendJson(res, status, { error: message }, extra);
  }

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const p = url.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    const expect = (wanted: string) => {
      if (method !== wanted) throw new HttpError(405, `${p} answers ${wanted}, got ${method}`);
    };
    if (p === '/v2/health/live' || p === '/v2/health/ready') {
      expect('GET');
      return sendHealth(res, !draining);
    }
    if (p === '/v2') {
      expect('GET');
      // ncs2_simulated (ours): a remote device's statistics must say simulated when the sticks are
      return sendJson(res, 200, { name: SERVER_NAME, version: serverVersion, extensions: ['binary_tensor_data'], ncs2_simulated: simulated });
    }
    if (p === '/metrics') {
      expect('GET');
      const text = await exporter.metrics();
      res.writeHead(200, { 'content-type': exporter.contentType, 'content-length': Buffer.byteLength(text) }).end(text);
      return;
    }
    if (options.token !== undefined && !bearerMatches(req.headers.authorization, options.token)) {
      throw new HttpError(401, 'this server needs a bearer token (Authorization: Bearer <token>) for models and inference; the one sent is missing or wrong');
    }
    const m = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(?:\/(ready|infer))?$/.exec(p);
    if (!m) throw new HttpError(404, `no such endpoint: ${method} ${p}; this server answers /v2, /v2/health/live, /v2/health/ready, /v2/models/<name>[/versions/<v>][/ready|/infer] and /metrics`);
    let parts: string[];
    try {
      parts = m.map((s) => (s === undefined ? s : decodeURIComponent(s)));
    } catch {
      throw new HttpError(400, `the path ${p} is not valid percent-encoding`);
    }
    const [, name, version, action] = parts;
    if (action === 'ready') {
      expect('GET');
      let ready = !draining;
      try {
        findModel(name, version);
      } catch {
        ready = false;
      }
      return sendHealth(res, ready);
    }
    const model = findModel(name, version);
    if (action === 'infer') {
      expect('POST');
      return infer(model, req, res);
    }
    expect('GET');
    sendJson(res, 200, metadata(model));
  }

  /**
   * A gRPC method: counted with the REST requests against maxRequests and the drain on shutdown;
   * a failure answers with the gRPC status of what went wrong and the same words REST gives.
   */
  function unary<Req, Res>(needsToken: boolean, answer: (request: Req) => Res | Promise<Res>, metadata?: () => grpc.Metadata): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      if (draining) return callback({ code: grpc.status.UNAVAILABLE, details: 'server is shutting down; send this request to another server' });
      if (inProgress >= maxRequests) return callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: `server busy: ${inProgress} requests in progress (limit ${maxRequests}); retry later` });
      if (needsToken && options.token !== undefined && !bearerMatches(call.metadata.get('authorization')[0]?.toString(), options.token)) {
        return callback({ code: grpc.status.UNAUTHENTICATED, details: 'this server needs a bearer token (metadata authorization: Bearer <token>) for models and inference; the one sent is missing or wrong' });
      }
      inProgress++;
      if (metadata) call.sendMetadata(metadata());
      Promise.resolve()
        .then(() => answer(call.request))
        .then(
          (response) => callback(null, response),
          (err: unknown) => {
            const { grpcCode, message } = describeFailure(err);
            callback({ code: grpcCode, details: message });
          },
        )
        .finally(() => {
          inProgress--;
          if (inProgress === 0) drained?.();
        });
    };
  }

  function grpcHandlers(): grpc.UntypedServiceImplementation {
    // the spec's empty version string: the server's choice
    const model = (name: string, version: string) => findModel(name, version === '' ? undefined : version);
    return {
      ServerLive: unary(false, () => ({ live: !draining })),
      ServerReady: unary(false, () => ({ ready: !draining })),
      ModelReady: unary(false, (r: { name: string; version: string }) => {
        try {
          model(r.name, r.version);
          return { ready: !draining };
        } catch {
          return { ready: false };
        }
      }),
      ServerMetadata: unary(
        false,
        () => ({ name: SERVER_NAME, version: serverVersion, extensions: [] }),
        // ncs2-simulated (ours, as REST's ncs2_simulated): a remote device says simulated when the sticks are
        () => {
          const m = new grpc.Metadata();
          m.set(SIMULATED_METADATA_KEY, String(simulated));
          return m;
        },
      ),
      ModelMetadata: unary(true, (r: { name: string; version: string }) => metadata(model(r.name, r.version))),
      ModelInfer: unary(true, async (request: GrpcInferRequest): Promise<GrpcInferResponse> => {
        const served = model(request.model_name, request.model_version ?? '');
        const inputs = decodeRawTensors(request.inputs, request.raw_input_contents ?? [], 'input');
        const requested = request.outputs?.length ? request.outputs : served.graph.info.outputs.map((o) => ({ name: o.name }));
        const result = await run(served, inputs, requested);
        const encoded = requested.map((o) => encodeRawTensor(o.name, result.outputs[o.name]));
        return {
          model_name: served.name,
          model_version: served.version,
          id: request.id ?? '',
          parameters: {
            [COMPUTE_US_PARAMETER]: { int64_param: Math.round(result.timings.inferMs * 1000) },
            [QUEUE_US_PARAMETER]: { int64_param: Math.round((result.timings.queueMs + result.timings.deviceQueueMs) * 1000) },
          },
          outputs: encoded.map((e) => e.tensor),
          raw_output_contents: encoded.map((e) => e.raw),
        };
      }),
    };
  }

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (draining) return sendError(res, new HttpError(503, 'server is shutting down; send this request to another server'));
    if (inProgress >= maxRequests) return sendError(res, new HttpError(503, `server busy: ${inProgress} requests in progress (limit ${maxRequests}); retry later`));
    inProgress++;
    // 'finish' (answer handed to the OS) comes before the client can send its next request on this
    // connection; 'close' covers a client that went away before any answer
    let counted = true;
    const done = () => {
      if (!counted) return;
      counted = false;
      inProgress--;
      if (inProgress === 0) drained?.();
    };
    res.once('finish', done);
    res.once('close', done);
    route(req, res).catch((err: unknown) => sendError(res, err));
  };
  const server = options.tls
    ? https.createServer({ cert: await fs.readFile(options.tls.certFile), key: await fs.readFile(options.tls.keyFile) }, handler)
    : http.createServer(handler);
  // a client that stalls mid-body must not hold a request slot for ever
  server.requestTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8000, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as { port: number; address: string };
  const hostPart = address.address.includes(':') ? `[${address.address}]` : address.address;
  const url = `${options.tls ? 'https' : 'http'}://${hostPart}:${address.port}`;
  let grpcServer: grpc.Server | undefined;
  let grpcPort: number | undefined;
  if (options.grpcPort !== undefined) {
    grpcServer = new grpc.Server({ 'grpc.max_receive_message_length': maxBodyBytes });
    grpcServer.addService(inferenceService().service, grpcHandlers());
    const credentials = options.tls
      ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: await fs.readFile(options.tls.certFile), private_key: await fs.readFile(options.tls.keyFile) }], false)
      : grpc.ServerCredentials.createInsecure();
    const bound = grpcServer;
    try {
      grpcPort = await new Promise<number>((resolve, reject) => bound.bindAsync(`${hostPart}:${options.grpcPort}`, credentials, (err, port) => (err ? reject(err) : resolve(port))));
    } catch (err) {
      server.close();
      await engine.close();
      throw new Error(`cannot serve gRPC on ${hostPart}:${options.grpcPort}: ${(err as Error).message}`, { cause: err });
    }
    log(`ncs2 serve: gRPC on ${hostPart}:${grpcPort}${options.tls ? ' (TLS)' : ''}`);
  }
  log(`ncs2 serve: listening on ${url} (models: ${repository.map((e) => `${e.name}/${e.version}`).join(', ')}; devices: ${engine.listDevices().map((d) => `${d.id}${d.info.simulated ? ' [simulated]' : ''}`).join(', ')})`);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      draining = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      // gRPC: refuses new calls and answers the ones in flight
      const grpcStopped = grpcServer ? new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve())) : Promise.resolve();
      server.closeIdleConnections();
      if (inProgress > 0) await new Promise<void>((resolve) => (drained = resolve));
      server.closeAllConnections();
      await Promise.all([stopped, grpcStopped]);
      exporter.detach();
      await engine.close();
    })());

  const models = Object.fromEntries([...served].map(([name, versions]) => [name, versions.map((v) => v.version)]));
  return { url, port: address.port, grpcPort, engine, models, close };
}

const USAGE = `usage: ncs2 serve --models <dir> [options]

Serves the models of a model repository (<name>/<version>/model.onnx) over the Open Inference
Protocol (KServe v2) REST API with Triton's binary tensor data extension (and its gRPC API with
--grpc-port), and Prometheus on /metrics.

  --models <dir>        model repository (required)
  --port <n>            TCP port (default 8000; 0 picks a free one)
  --host <addr>         address to listen on (default 127.0.0.1; 0.0.0.0 for other machines)
  --grpc-port <n>       also serve the gRPC API on this port (0 picks a free one; default: REST only)
  --device <kind>       cpu or sim-ncs2 (simulated sticks) (default cpu)
  --devices <n>         CPU devices or simulated sticks (default 1)
  --usb <2|3>           USB generation of simulated sticks (default 3)
  --workers <n>         worker threads per CPU device
  --threads <n>         onnxruntime threads per worker
  --queue <n>           requests waiting per model before 503 (default 64)
  --max-requests <n>    requests read or run at once before 503 (default 256)
  --max-body-mb <n>     largest request body before 413 (default 64)
  NCS2_SERVE_TOKEN      environment variable: when set, models and inference need this bearer token
  --tls-cert <file>     serve HTTPS with this PEM certificate ...
  --tls-key <file>      ... and this PEM key
SIGTERM or SIGINT: stops accepting, answers the requests in flight, closes the devices, exits 0.`;

function positive(name: string, value: string | undefined, fallback: number | undefined, allowZero = false): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || (!allowZero && n < 1)) throw new Error(`--${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got '${value}'`);
  return n;
}

/** Device specs for `--device`, `--devices`, `--usb`, `--workers`, `--threads`. */
export function serveDevices(kind: string, count: number, usb: string, workers?: number, threads?: number): DeviceSpec[] {
  if (kind === 'cpu') return Array.from({ length: count }, (_, i) => ({ kind: 'cpu' as const, id: `cpu-${i}`, workers, threadsPerWorker: threads }));
  if (kind === 'sim-ncs2') {
    if (usb !== '2' && usb !== '3') throw new Error(`--usb must be 2 or 3, got '${usb}'`);
    return Array.from({ length: count }, (_, i) => ({ kind: 'sim-ncs2' as const, id: `sim-ncs2-${i}`, usb: Number(usb) as 2 | 3 }));
  }
  throw new Error(`--device must be cpu or sim-ncs2, got '${kind}'`);
}

/** The `ncs2 serve` command: runs until SIGTERM or SIGINT. */
export async function serveCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      models: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'grpc-port': { type: 'string' },
      device: { type: 'string', default: 'cpu' },
      devices: { type: 'string' },
      usb: { type: 'string', default: '3' },
      workers: { type: 'string' },
      threads: { type: 'string' },
      queue: { type: 'string' },
      'max-requests': { type: 'string' },
      'max-body-mb': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (!values.models) throw new Error(`--models <dir> is required\n${USAGE}`);
  if (Boolean(values['tls-cert']) !== Boolean(values['tls-key'])) throw new Error('--tls-cert and --tls-key go together');
  const running = await startServer({
    modelRepository: values.models,
    port: positive('port', values.port, 8000, true),
    host: values.host,
    grpcPort: positive('grpc-port', values['grpc-port'], undefined, true),
    devices: serveDevices(values.device!, positive('devices', values.devices, 1)!, values.usb!, positive('workers', values.workers, undefined), positive('threads', values.threads, undefined)),
    queueCapacity: positive('queue', values.queue, undefined),
    maxRequests: positive('max-requests', values['max-requests'], undefined),
    maxBodyBytes: values['max-body-mb'] === undefined ? undefined : positive('max-body-mb', values['max-body-mb'], 1)! * 1024 * 1024,
    // from the environment, not argv: a command line is visible to every user of the machine (ps)
    token: process.env.NCS2_SERVE_TOKEN || undefined,
    tls: values['tls-cert'] ? { certFile: values['tls-cert'], keyFile: values['tls-key']! } : undefined,
    log: (line) => console.log(line),
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      console.log(`ncs2 serve: ${signal}: answering the requests in flight, then exiting`);
      void running.close().then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  console.log('ncs2 serve: stopped');
}
