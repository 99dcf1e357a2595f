/**
 * A device that is another machine's inference server, spoken to over the Open Inference Protocol
 * REST or gRPC API (Triton, OVMS, KServe, MLServer, or another box's `ncs2 serve`).
 *
 * The engine reads a graph's inputs and outputs from the ONNX bytes it loads, so a remote member
 * is given the same local model file: load() checks that the server's model metadata matches it
 * (names, datatypes, fixed dims) and then every run goes to the server. The local file is only
 * read, never run.
 *
 * node:http/https and not fetch: Node 20's fetch (undici) takes a CA file only through undici's
 * own Agent, which is not a dependency here; an https.Agent takes `ca` directly.
 */
import * as grpc from '@grpc/grpc-js';
import * as http from 'http';
import * as https from 'https';
import { readFileSync } from 'fs';
import type { Device, DeviceGraph, DeviceInfo, DeviceTelemetry, LoadRequest, RunRequest, RunResult } from '../device';
import { DeviceError, InputError, ModelLoadError } from '../../errors';
import { readModelInfo, type ModelInfo } from '../../graph/model-info';
import { releasePooled } from '../../memory/memory-pool';
import { LatencyHistogram, type LatencySummary } from '../../telemetry/stats';
import type { TensorData } from '../../tensor';
import {
  COMPUTE_MS_PARAMETER,
  INFERENCE_HEADER_LENGTH,
  QUEUE_MS_PARAMETER,
  assembleBody,
  decodeTensors,
  encodeTensor,
  fromWireType,
  splitBody,
  type InferRequestJson,
  type InferResponseJson,
  type ModelMetadata,
  type WireTensor,
} from './protocol';
import {
  COMPUTE_US_PARAMETER,
  QUEUE_US_PARAMETER,
  SIMULATED_METADATA_KEY,
  bearerMetadata,
  callUnary,
  createInferenceClient,
  decodeRawTensors,
  encodeRawTensor,
  fromGrpcParameters,
  type GrpcInferResponse,
} from './grpc';

export interface RemoteDeviceSpec {
  kind: 'remote';
  id?: string;
  /** The server's base URL, http(s)://host:port (REST: the /v2 paths are added; gRPC: https means TLS). */
  url: string;
  /** The protocol's REST API (default) or its gRPC API (tensors as raw_input_contents). */
  protocol?: 'rest' | 'grpc';
  /** The model's name on the server. */
  model: string;
  /** The model version; default: the one the server chooses. */
  version?: string;
  /** Per-request timeout, ms (default 10000). */
  timeoutMs?: number;
  /** Requests sent to this endpoint at once (default 4). */
  maxInFlight?: number;
  /** Sent as `Authorization: Bearer <token>`; never logged, never in statistics or errors. */
  token?: string;
  /** Extra request headers (API keys ...); their values are never logged either. */
  headers?: Record<string, string>;
  /** PEM file of the CA that signed the server's certificate (https). */
  caFile?: string;
  /**
   * Tensors as binary data (Triton's binary tensor data extension) or JSON. Default: binary when the
   * server lists 'binary_tensor_data' in its metadata, JSON otherwise; true: binary regardless (a
   * server that supports it without listing it); false: JSON.
   */
  binary?: boolean;
}

export interface RemoteDeviceStats {
  url: string;
  model: string;
  version: string | null;
  state: 'up' | 'down';
  /** Why the endpoint is down, and when it is probed next. */
  down: { since: string; reason: string; nextProbeMs: number } | null;
  /** grpc: raw tensor bytes over gRPC. */
  transport: 'binary' | 'json' | 'grpc';
  requests: number;
  failed: number;
  timeouts: number;
  /** Request sent to response read, on this host. */
  roundTripMs: LatencySummary;
  /** The server's own compute time, when it reports one (`ncs2 serve` does: ncs2_compute_ms); null otherwise. */
  serverComputeMs: LatencySummary | null;
  serverQueueMs: LatencySummary | null;
  /** REST: whole bodies; gRPC: the tensors' raw bytes (message framing not counted). */
  bytesSent: number;
  bytesReceived: number;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

interface RemoteGraph {
  outputNames: string[];
}

const DEFAULT_TIMEOUT_MS = 10_000;
const FIRST_PROBE_MS = 250;
/** Probes back off to this: a restarted server is back in use within about this long. */
const MAX_PROBE_MS = 2_000;
const MAX_RESPONSE_BYTES = 512 * 1024 * 1024;
const TLS_CODES = /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/;
const TLS_WORDS = /certificate|ssl|tls|handshake/i;

export class RemoteDevice implements Device {
  readonly id: string;
  readonly kind = 'remote' as const;
  readonly info: DeviceInfo;
  readonly maxInFlight: number;
  readonly parallelism: number;
  private readonly base: URL;
  private readonly origin: string;
  private readonly modelPath: string;
  private readonly timeoutMs: number;
  private readonly agent: http.Agent;
  private readonly headers: Record<string, string>;
  /** Set for protocol 'grpc': the channel to the server, and the call metadata (the token). */
  private readonly grpc?: { client: grpc.Client; metadata: grpc.Metadata };
  private readonly graphs = new Map<string, RemoteGraph>();
  private binary: boolean;
  private down?: { since: number; reason: string; backoffMs: number; timer?: NodeJS.Timeout };
  private closed = false;
  private readonly counts = { requests: 0, failed: 0, timeouts: 0, bytesSent: 0, bytesReceived: 0 };
  private readonly roundTrip = new LatencyHistogram();
  private readonly serverCompute = new LatencyHistogram();
  private readonly serverQueue = new LatencyHistogram();

  constructor(private readonly spec: RemoteDeviceSpec) {
    let url: URL;
    try {
      url = new URL(spec.url);
    } catch {
      throw new InputError(`remote device: url must be http://host:port or https://host:port, got '${String(spec.url)}'`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InputError(`remote device: url must start with http:// or https://, got '${url.protocol}'`);
    if (url.username || url.password) throw new InputError('remote device: put credentials in the token or headers, not in the url (a url shows up in logs and statistics)');
    if (typeof spec.model !== 'string' || spec.model === '') throw new InputError('remote device: model (the model name on the server) is required');
    this.maxInFlight = positiveInt('maxInFlight', spec.maxInFlight, 4);
    this.timeoutMs = positiveInt('timeoutMs', spec.timeoutMs, DEFAULT_TIMEOUT_MS);
    this.parallelism = this.maxInFlight;
    this.base = url;
    this.origin = url.origin;
    this.modelPath = `/v2/models/${encodeURIComponent(spec.model)}${spec.version ? `/versions/${encodeURIComponent(spec.version)}` : ''}`;
    this.binary = spec.binary ?? true;
    let ca: Buffer | undefined;
    if (spec.caFile) {
      if (url.protocol !== 'https:') throw new InputError(`remote device: caFile is for https urls, got ${url.origin}`);
      try {
        ca = readFileSync(spec.caFile);
      } catch (err) {
        throw new InputError(`remote device: cannot read caFile ${spec.caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; expected a PEM certificate file`);
      }
    }
    this.agent = url.protocol === 'https:' ? new https.Agent({ keepAlive: true, maxSockets: this.maxInFlight, ca }) : new http.Agent({ keepAlive: true, maxSockets: this.maxInFlight });
    this.headers = { ...(spec.headers ?? {}) };
    if (spec.token) this.headers.authorization = `Bearer ${spec.token}`;
    const protocol = spec.protocol ?? 'rest';
    if (protocol !== 'rest' && protocol !== 'grpc') throw new InputError(`remote device: protocol must be 'rest' or 'grpc', got ${JSON.stringify(spec.protocol)}`);
    if (protocol === 'grpc') {
      if (url.pathname !== '/' || url.search) throw new InputError(`remote device: a gRPC url is http(s)://host:port with no path, got '${url.origin}${url.pathname}'`);
      const port = url.port || (url.protocol === 'https:' ? '443' : '80');
      this.grpc = { client: createInferenceClient(`${url.hostname}:${port}`, url.protocol === 'https:', ca, MAX_RESPONSE_BYTES), metadata: bearerMetadata(spec.token, spec.headers) };
    }
    this.id = spec.id ?? `remote-${url.host}-${spec.model}`;
    this.info = {
      name: `${spec.model}${spec.version ? ` v${spec.version}` : ''} at ${this.origin}`,
      description: `Open Inference Protocol server at ${this.origin}`,
      simulated: false,
      url: this.origin,
      model: spec.model,
    };
  }

  // ---------------------------------------------------------------- HTTP

  private where(): string {
    return `inference server ${this.origin}`;
  }

  private request(method: string, path: string, body?: Buffer, headers: Record<string, string | number> = {}, timeoutMs = this.timeoutMs): Promise<Reply> {
    const signal = AbortSignal.timeout(timeoutMs);
    const mod = this.base.protocol === 'https:' ? https : http;
    return new Promise<Reply>((resolve, reject) => {
      const req = mod.request(
        { protocol: this.base.protocol, hostname: this.base.hostname, port: this.base.port, path: this.base.pathname.replace(/\/$/, '') + path, method, agent: this.agent, signal, headers: { ...this.headers, ...headers, ...(body ? { 'content-length': body.length } : {}) } },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_RESPONSE_BYTES) res.destroy(new DeviceError(`${this.where()} sent a response larger than ${MAX_RESPONSE_BYTES} bytes`, this.id));
            else chunks.push(chunk);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', (err) => reject(this.transportError(err, signal, timeoutMs)));
        },
      );
      req.on('error', (err) => reject(this.transportError(err, signal, timeoutMs)));
      req.end(body);
    });
  }

  /** A failure to talk to the server, in words a person can act on (never with the token or headers). */
  private transportError(err: Error, signal: AbortSignal, timeoutMs: number): DeviceError {
    if (err instanceof DeviceError) return err;
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (signal.aborted) {
      this.counts.timeouts++;
      return new DeviceError(`${this.where()} did not answer within ${timeoutMs} ms (timeoutMs)`, this.id);
    }
    if (TLS_CODES.test(code)) return new DeviceError(`TLS failure talking to ${this.where()} (${code}: ${err.message}); give the CA certificate that signed the server's certificate as caFile`, this.id);
    if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
      return new DeviceError(`cannot reach ${this.where()} (${code}): is the server running, and is the url right?`, this.id);
    }
    return new DeviceError(`lost the connection to ${this.where()} (${code || err.message})`, this.id);
  }

  /** The server's own words from an error answer ({"error": ...}), or what the body starts with. */
  private static serverWords(reply: Reply): string {
    const text = reply.body.toString('utf8');
    try {
      const parsed = JSON.parse(text) as { error?: unknown };
      if (typeof parsed.error === 'string') return parsed.error;
    } catch {
      // not JSON: show its start
    }
    return text.slice(0, 200) || '(empty body)';
  }

  private credentialsRefused(reply: Reply): DeviceError | undefined {
    if (reply.status !== 401 && reply.status !== 403) return undefined;
    return new DeviceError(`${this.where()} refused the credentials (HTTP ${reply.status}): check the token or headers of this remote device`, this.id);
  }

  // ---------------------------------------------------------------- gRPC

  /** A gRPC call with this device's deadline and metadata; a failure is a GrpcFailure. */
  private async call<Res>(method: string, request: object, timeoutMs = this.timeoutMs): Promise<{ response: Res; metadata: grpc.Metadata }> {
    try {
      return await callUnary<Res>(this.grpc!.client, method, request, this.grpc!.metadata, timeoutMs);
    } catch (err) {
      throw this.grpcFailure(err as grpc.ServiceError, timeoutMs);
    }
  }

  /** A failed gRPC call in words a person can act on, and whether it says the endpoint is gone. */
  private grpcFailure(err: grpc.ServiceError, timeoutMs: number): GrpcFailure {
    const code = grpc.status[err.code] ?? String(err.code);
    const words = err.details || err.message;
    if (err.code === grpc.status.DEADLINE_EXCEEDED) {
      this.counts.timeouts++;
      return new GrpcFailure(`${this.where()} did not answer within ${timeoutMs} ms (timeoutMs)`, this.id, err.code, true);
    }
    if (err.code === grpc.status.UNAVAILABLE) {
      // grpc-js keeps only the TLS error's text ("unable to verify the first certificate"), not its code
      if (TLS_CODES.test(words) || TLS_WORDS.test(words)) return new GrpcFailure(`TLS failure talking to ${this.where()} over gRPC (${words}); give the CA certificate that signed the server's certificate as caFile`, this.id, err.code, true);
      return new GrpcFailure(`cannot reach ${this.where()} over gRPC (UNAVAILABLE: ${words}): is the server running with gRPC on this port, and is the url right?`, this.id, err.code, true);
    }
    if (err.code === grpc.status.UNAUTHENTICATED || err.code === grpc.status.PERMISSION_DENIED) {
      return new GrpcFailure(`${this.where()} refused the credentials (gRPC ${code}): check the token or headers of this remote device`, this.id, err.code, false);
    }
    return new GrpcFailure(`${this.where()} answered gRPC ${code}: ${words}`, this.id, err.code, err.code === grpc.status.NOT_FOUND, words);
  }

  private async loadGrpc(model: string): Promise<ModelMetadata> {
    const version = this.spec.version ?? '';
    if (!(await this.call<{ live: boolean }>('ServerLive', {})).response.live) throw new ModelLoadError(`${this.where()} is not live (gRPC ServerLive answered false)`);
    if (!(await this.call<{ ready: boolean }>('ServerReady', {})).response.ready) throw new ModelLoadError(`${this.where()} is live but not ready (gRPC ServerReady answered false)`);
    if (!(await this.call<{ ready: boolean }>('ModelReady', { name: this.spec.model, version })).response.ready) {
      throw new ModelLoadError(`${model} is not ready on ${this.where()} (gRPC ModelReady answered false); check the name and version it serves`);
    }
    const server = await this.call('ServerMetadata', {});
    if (server.metadata.get(SIMULATED_METADATA_KEY)[0] === 'true') this.info.simulated = true;
    return (await this.call<ModelMetadata>('ModelMetadata', { name: this.spec.model, version })).response;
  }

  private async runGrpc(request: RunRequest, graph: RemoteGraph): Promise<{ outputs: Record<string, TensorData>; parameters: InferResponseJson['parameters'] }> {
    const encoded = request.inputs.map((t) => encodeRawTensor(t.name, t));
    const raw = encoded.map((e) => e.raw);
    this.counts.bytesSent += raw.reduce((n, r) => n + r.byteLength, 0);
    let response: GrpcInferResponse;
    try {
      response = (await this.call<GrpcInferResponse>('ModelInfer', {
        model_name: this.spec.model,
        model_version: this.spec.version ?? '',
        inputs: encoded.map((e) => e.tensor),
        outputs: graph.outputNames.map((name) => ({ name })),
        raw_input_contents: raw,
      })).response;
    } catch (err) {
      const failure = err as GrpcFailure;
      if (failure.grpcCode === grpc.status.INVALID_ARGUMENT) {
        throw new InputError(`${this.where()} refused the request for model '${this.spec.model}' (gRPC INVALID_ARGUMENT): ${failure.words}`);
      }
      if (failure.grpcCode === grpc.status.NOT_FOUND) {
        this.markDown(`model '${this.spec.model}' is not there (gRPC NOT_FOUND: ${failure.words})`);
        throw new DeviceError(`${this.where()} does not serve model '${this.spec.model}' any more (gRPC NOT_FOUND: ${failure.words})`, this.id);
      }
      if (failure.endpointGone) this.markDown(failure.message);
      throw new DeviceError(failure.message, this.id);
    }
    this.counts.bytesReceived += response.raw_output_contents.reduce((n, r) => n + r.byteLength, 0);
    let outputs: Record<string, TensorData>;
    try {
      outputs = this.complete(decodeRawTensors(response.outputs, response.raw_output_contents, 'output'), graph);
    } catch (err) {
      throw new DeviceError(`${this.where()} sent an answer that does not follow the protocol: ${(err as Error).message}`, this.id);
    }
    const received = fromGrpcParameters(response.parameters);
    const parameters: InferResponseJson['parameters'] = {};
    // microseconds on the wire (gRPC parameters hold no floats), ms in the statistics
    if (typeof received[COMPUTE_US_PARAMETER] === 'number') parameters[COMPUTE_MS_PARAMETER] = received[COMPUTE_US_PARAMETER] / 1000;
    if (typeof received[QUEUE_US_PARAMETER] === 'number') parameters[QUEUE_MS_PARAMETER] = received[QUEUE_US_PARAMETER] / 1000;
    return { outputs, parameters };
  }

  // ---------------------------------------------------------------- load

  private async get(path: string): Promise<Reply> {
    const reply = await this.request('GET', path);
    const refused = this.credentialsRefused(reply);
    if (refused) throw refused;
    return reply;
  }

  async load(request: LoadRequest): Promise<DeviceGraph> {
    if (this.closed) throw new DeviceError(`remote device ${this.id} is closed`, this.id);
    const model = `model '${this.spec.model}'${this.spec.version ? ` version ${this.spec.version}` : ''}`;
    try {
      if (this.grpc) {
        const metadata = await this.loadGrpc(model);
        return this.loaded(request, metadata, model);
      }
      if ((await this.get('/v2/health/live')).status !== 200) throw new ModelLoadError(`${this.where()} is not live (GET /v2/health/live did not answer 200)`);
      if ((await this.get('/v2/health/ready')).status !== 200) throw new ModelLoadError(`${this.where()} is live but not ready (GET /v2/health/ready did not answer 200)`);
      const ready = await this.get(`${this.modelPath}/ready`);
      if (ready.status !== 200) throw new ModelLoadError(`${model} is not ready on ${this.where()} (HTTP ${ready.status}); check the name and version it serves`);
      const server = await this.get('/v2');
      const meta = server.status === 200 ? (parseJson(server.body) as { extensions?: unknown; ncs2_simulated?: unknown }) : {};
      this.binary = this.spec.binary ?? (Array.isArray(meta.extensions) && meta.extensions.includes('binary_tensor_data'));
      if (meta.ncs2_simulated === true) this.info.simulated = true;
      const reply = await this.get(this.modelPath);
      if (reply.status !== 200) throw new ModelLoadError(`${this.where()} gave no metadata for ${model} (HTTP ${reply.status}: ${RemoteDevice.serverWords(reply)})`);
      return this.loaded(request, parseJson(reply.body) as ModelMetadata, model);
    } catch (err) {
      if (err instanceof DeviceError || err instanceof ModelLoadError) throw new ModelLoadError(err.message);
      throw err;
    }
  }

  /** The server's model metadata checked against the local file: the graph is ready to run. */
  private loaded(request: LoadRequest, metadata: ModelMetadata, model: string): DeviceGraph {
    const local = readModelInfo(typeof request.model === 'string' ? readFileSync(request.model) : request.model);
    checkMetadata(local, metadata, `${model} on ${this.where()}`);
    const outputNames = local.outputs.map((o) => o.name);
    this.graphs.set(request.key, { outputNames });
    this.markUp();
    return { key: request.key, inputNames: local.inputs.map((i) => i.name), outputNames, executionProvider: `remote ${this.origin} (${this.transport()})` };
  }

  private transport(): string {
    return this.grpc ? 'gRPC, raw tensors' : `${this.binary ? 'binary' : 'JSON'} tensors`;
  }

  async unload(key: string): Promise<void> {
    this.graphs.delete(key);
  }

  // ---------------------------------------------------------------- run

  async run(request: RunRequest): Promise<RunResult> {
    if (this.closed) throw new DeviceError(`remote device ${this.id} is closed`, this.id);
    const graph = this.graphs.get(request.graphKey);
    if (!graph) throw new DeviceError(`remote device ${this.id} has not loaded this graph`, this.id);
    if (this.down) throw new DeviceError(`${this.where()} is down since ${new Date(this.down.since).toISOString()} (${this.down.reason}); probing it every ${this.down.backoffMs} ms`, this.id);
    if (this.grpc) {
      this.counts.requests++;
      const started = performance.now();
      let answer: Awaited<ReturnType<RemoteDevice['runGrpc']>>;
      try {
        answer = await this.runGrpc(request, graph);
      } catch (err) {
        this.counts.failed++;
        throw err;
      }
      return this.answered(request, performance.now() - started, answer.outputs, answer.parameters);
    }
    const binary: Uint8Array[] = [];
    const json: InferRequestJson = {
      inputs: request.inputs.map((t) => encodeTensor(t.name, t, this.binary, binary)),
      outputs: graph.outputNames.map((name) => (this.binary ? { name, parameters: { binary_data: true } } : { name })),
    };
    const { body, headerLength } = assembleBody(json, binary);
    const headers: Record<string, string | number> = { 'content-type': headerLength === undefined ? 'application/json' : 'application/octet-stream' };
    if (headerLength !== undefined) headers[INFERENCE_HEADER_LENGTH] = headerLength;
    this.counts.requests++;
    this.counts.bytesSent += body.length;
    const started = performance.now();
    let reply: Reply;
    try {
      reply = await this.request('POST', `${this.modelPath}/infer`, body, headers);
    } catch (err) {
      this.counts.failed++;
      this.markDown((err as Error).message);
      throw err;
    }
    const roundTripMs = performance.now() - started;
    this.counts.bytesReceived += reply.body.length;
    if (reply.status !== 200) {
      this.counts.failed++;
      throw this.refusal(reply);
    }
    let outputs: Record<string, TensorData>;
    let parameters: InferResponseJson['parameters'];
    try {
      const { json: response, binary: tail } = splitBody(reply.body, reply.headers[INFERENCE_HEADER_LENGTH]);
      parameters = (response as InferResponseJson).parameters;
      outputs = this.complete(decodeTensors((response as InferResponseJson).outputs, tail, 'output'), graph);
    } catch (err) {
      this.counts.failed++;
      throw new DeviceError(`${this.where()} sent an answer that does not follow the protocol: ${(err as Error).message}`, this.id);
    }
    return this.answered(request, roundTripMs, outputs, parameters);
  }

  /** The decoded outputs by name; every output the graph has must be there. */
  private complete(decoded: Array<TensorData & { name: string }>, graph: RemoteGraph): Record<string, TensorData> {
    const outputs: Record<string, TensorData> = {};
    for (const t of decoded) outputs[t.name] = { type: t.type, dims: t.dims, data: t.data };
    const missing = graph.outputNames.filter((n) => !outputs[n]);
    if (missing.length) throw new Error(`outputs ${missing.join(', ')} are missing`);
    return outputs;
  }

  /** A successful run: the statistics, and the outputs for the engine. */
  private answered(request: RunRequest, roundTripMs: number, outputs: Record<string, TensorData>, parameters: InferResponseJson['parameters']): RunResult {
    // the inputs stayed here (nothing moved to a worker): pooled ones go home now, not on failure,
    // when the engine still needs them to retry on another device
    for (const t of request.inputs) releasePooled(t.data);
    this.roundTrip.record(roundTripMs);
    const computeMs = parameters?.[COMPUTE_MS_PARAMETER];
    if (typeof computeMs === 'number') this.serverCompute.record(computeMs);
    const queueMs = parameters?.[QUEUE_MS_PARAMETER];
    if (typeof queueMs === 'number') this.serverQueue.record(queueMs);
    // the round trip is what this device costs the engine per request: its scheduler plans with it
    return { outputs, inferMs: roundTripMs, deviceQueueMs: 0 };
  }

  /** A non-200 answer: the caller's data (400, 413: not retried elsewhere) or the server's state (retried). */
  private refusal(reply: Reply): Error {
    const words = RemoteDevice.serverWords(reply);
    const refused = this.credentialsRefused(reply);
    if (refused) return refused;
    if (reply.status === 400 || reply.status === 413) return new InputError(`${this.where()} refused the request for model '${this.spec.model}' (HTTP ${reply.status}): ${words}`);
    if (reply.status === 404) {
      this.markDown(`model '${this.spec.model}' is not there (HTTP 404: ${words})`);
      return new DeviceError(`${this.where()} does not serve model '${this.spec.model}' any more (HTTP 404: ${words})`, this.id);
    }
    return new DeviceError(`${this.where()} could not run model '${this.spec.model}' (HTTP ${reply.status}: ${words})`, this.id);
  }

  // ---------------------------------------------------------------- health

  available(): boolean {
    return !this.down && !this.closed;
  }

  /** Takes the endpoint out: runs fail at once (the engine retries them elsewhere) until a probe finds it ready. */
  private markDown(reason: string): void {
    if (this.closed || this.down) return;
    this.down = { since: Date.now(), reason, backoffMs: FIRST_PROBE_MS };
    this.scheduleProbe();
  }

  private markUp(): void {
    if (this.down?.timer) clearTimeout(this.down.timer);
    this.down = undefined;
  }

  private scheduleProbe(): void {
    const down = this.down;
    if (!down) return;
    down.timer = setTimeout(() => void this.probe(), down.backoffMs);
    down.timer.unref();
  }

  private async probe(): Promise<void> {
    const down = this.down;
    if (!down || this.closed) return;
    try {
      if (this.grpc) {
        const ready = await this.call<{ ready: boolean }>('ModelReady', { name: this.spec.model, version: this.spec.version ?? '' }, Math.min(this.timeoutMs, MAX_PROBE_MS));
        if (ready.response.ready) return this.markUp();
        throw new Error('gRPC ModelReady answered false');
      }
      const ready = await this.request('GET', `${this.modelPath}/ready`, undefined, {}, Math.min(this.timeoutMs, MAX_PROBE_MS));
      if (ready.status === 200) {
        this.markUp();
        return;
      }
      down.reason = `model ready answered HTTP ${ready.status}`;
    } catch (err) {
      down.reason = (err as Error).message;
    }
    if (this.down !== down) return;
    down.backoffMs = Math.min(down.backoffMs * 2, MAX_PROBE_MS);
    this.scheduleProbe();
  }

  // ---------------------------------------------------------------- reporting

  stats(): RemoteDeviceStats {
    const d = this.down;
    return {
      url: this.origin,
      model: this.spec.model,
      version: this.spec.version ?? null,
      state: d ? 'down' : 'up',
      down: d ? { since: new Date(d.since).toISOString(), reason: d.reason, nextProbeMs: d.backoffMs } : null,
      transport: this.grpc ? 'grpc' : this.binary ? 'binary' : 'json',
      ...this.counts,
      roundTripMs: this.roundTrip.summary(),
      serverComputeMs: this.serverCompute.summary().count ? this.serverCompute.summary() : null,
      serverQueueMs: this.serverQueue.summary().count ? this.serverQueue.summary() : null,
    };
  }

  telemetry(): DeviceTelemetry {
    return { simulated: this.info.simulated };
  }

  peakOpsPerSec(): number | undefined {
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.markUp();
    this.graphs.clear();
    this.agent.destroy();
    this.grpc?.client.close();
  }
}

/** A failed gRPC call: its status code, the server's words, and whether the endpoint should be taken out. */
class GrpcFailure extends DeviceError {
  constructor(message: string, deviceId: string, readonly grpcCode: grpc.status, readonly endpointGone: boolean, readonly words = message) {
    super(message, deviceId);
  }
}

function positiveInt(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw new InputError(`remote device: ${name} must be a positive integer, got ${JSON.stringify(value)}`);
  return value;
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new ModelLoadError(`the server's answer is not JSON: ${(err as Error).message}`);
  }
}

/** The server's model must take and give what the local model file says, or results would be misread. */
function checkMetadata(local: ModelInfo, remote: ModelMetadata, where: string): void {
  const compare = (kind: 'input' | 'output', mine: ModelInfo['inputs'], theirs: unknown) => {
    if (!Array.isArray(theirs)) throw new ModelLoadError(`${where}: metadata has no ${kind}s list`);
    const byName = new Map((theirs as WireTensor[]).map((t) => [t.name, t]));
    for (const t of mine) {
      const r = byName.get(t.name);
      if (!r) throw new ModelLoadError(`${where} has no ${kind} '${t.name}' (the local model file has it); the server's ${kind}s are ${[...byName.keys()].map((n) => `'${n}'`).join(', ')}`);
      const type = fromWireType(r.datatype, `${where}: ${kind} '${t.name}'`);
      if (type !== t.type) throw new ModelLoadError(`${where}: ${kind} '${t.name}' is ${r.datatype} there, ${t.type} in the local model file`);
      const fixedMismatch = !Array.isArray(r.shape) || r.shape.length !== t.dims.length || t.dims.some((d, i) => typeof d === 'number' && d > 0 && r.shape[i] > 0 && r.shape[i] !== d);
      if (fixedMismatch) throw new ModelLoadError(`${where}: ${kind} '${t.name}' has shape [${String(r.shape)}] there, [${t.dims.join(', ')}] in the local model file`);
    }
    if (kind === 'input' && byName.size !== mine.length) {
      const extra = [...byName.keys()].filter((n) => !mine.some((t) => t.name === n));
      throw new ModelLoadError(`${where} takes inputs the local model file does not have: ${extra.join(', ')}`);
    }
  };
  compare('input', local.inputs, remote.inputs);
  compare('output', local.outputs, remote.outputs);
}
