/**
 * The Open Inference Protocol over gRPC, as both `ncs2 serve --grpc-port` and the remote device
 * (protocol 'grpc') speak it: the service loaded from grpc_predict_v2.proto (written from
 * kserve/kserve docs/predict-api/v2/grpc_predict_v2.proto) with @grpc/proto-loader, and tensors
 * as raw bytes (raw_input_contents / raw_output_contents: row-major, little-endian, no padding).
 */
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { InputError } from '../../errors';
import { elementCount, typedArrayCtor, type TensorData } from '../../tensor';
import { checkShape, fromBytes, fromWireType, toWireType, type Parameters } from './protocol';

/** Beside this file in the source tree and in dist/ (scripts/copy-assets.js copies it). */
export const PROTO_FILE = path.join(__dirname, 'grpc_predict_v2.proto');

/**
 * Server-specific response parameters of `ncs2 serve` over gRPC. The spec's parameters hold no
 * floating-point value (bool, int64, string), so the device's run time and queue time travel as
 * integer microseconds.
 */
export const COMPUTE_US_PARAMETER = 'ncs2_compute_us';
export const QUEUE_US_PARAMETER = 'ncs2_queue_us';
/** Initial metadata of `ncs2 serve`'s ServerMetadata answer: its devices are simulated sticks. */
export const SIMULATED_METADATA_KEY = 'ncs2-simulated';

/** An InferParameter as proto-loader gives it (oneofs: true). */
export interface GrpcParameter {
  bool_param?: boolean;
  int64_param?: number;
  string_param?: string;
  parameter_choice?: 'bool_param' | 'int64_param' | 'string_param';
}

export interface GrpcTensor {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: Record<string, GrpcParameter>;
  contents?: Record<string, unknown[]> | null;
}

export interface GrpcInferRequest {
  model_name: string;
  model_version?: string;
  id?: string;
  parameters?: Record<string, GrpcParameter>;
  inputs: GrpcTensor[];
  outputs?: Array<{ name: string; parameters?: Record<string, GrpcParameter> }>;
  raw_input_contents?: Uint8Array[];
}

export interface GrpcInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, GrpcParameter>;
  outputs: GrpcTensor[];
  raw_output_contents: Uint8Array[];
}

type ServiceConstructor = grpc.ServiceClientConstructor;

let loaded: ServiceConstructor | undefined;

/** The GRPCInferenceService client constructor; its `.service` is the definition a server adds. */
export function inferenceService(): ServiceConstructor {
  if (!loaded) {
    // keepCase: the spec's field names (raw_input_contents); longs as Number: shapes and
    // parameters fit a double; defaults: absent repeated fields read as []
    const definition = protoLoader.loadSync(PROTO_FILE, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
    loaded = (grpc.loadPackageDefinition(definition).inference as grpc.GrpcObject).GRPCInferenceService as ServiceConstructor;
  }
  return loaded;
}

export function toGrpcParameters(parameters: Parameters): Record<string, GrpcParameter> {
  const out: Record<string, GrpcParameter> = {};
  for (const [key, value] of Object.entries(parameters)) {
    if (typeof value === 'boolean') out[key] = { bool_param: value };
    else if (typeof value === 'number') out[key] = { int64_param: Math.round(value) };
    else out[key] = { string_param: value };
  }
  return out;
}

export function fromGrpcParameters(parameters: Record<string, GrpcParameter> | undefined): Parameters {
  const out: Parameters = {};
  for (const [key, p] of Object.entries(parameters ?? {})) {
    const choice = p.parameter_choice;
    if (choice) out[key] = p[choice] as string | number | boolean;
  }
  return out;
}

/** A tensor's metadata and its raw bytes (a view of the typed array, not a copy). */
export function encodeRawTensor(name: string, t: TensorData): { tensor: GrpcTensor; raw: Uint8Array } {
  return { tensor: { name, datatype: toWireType(t.type), shape: t.dims }, raw: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
}

/**
 * The tensors of a request's inputs (or a response's outputs) with their raw contents: one entry
 * per tensor, each exactly the size its datatype and shape need. Typed `contents` are refused with
 * a clear message: this implementation reads raw contents only.
 */
export function decodeRawTensors(list: GrpcTensor[], raw: Uint8Array[], what: 'input' | 'output'): Array<TensorData & { name: string }> {
  const field = what === 'input' ? 'raw_input_contents' : 'raw_output_contents';
  if (raw.length !== list.length) {
    const typed = list.some((t) => t.contents && Object.values(t.contents).some((v) => Array.isArray(v) && v.length > 0));
    throw new InputError(`${list.length} ${what}(s) but ${raw.length} ${field} entries; ${typed ? `typed "contents" are not read here, send every tensor in ${field}` : `give one ${field} entry per ${what}, in the same order`}`);
  }
  return list.map((t, index) => {
    if (typeof t.name !== 'string' || t.name === '') throw new InputError(`${what} ${index}: "name" must be a non-empty string`);
    const label = `${what} '${t.name}'`;
    const type = fromWireType(t.datatype, label);
    const dims = checkShape(t.shape, label);
    const count = elementCount(dims);
    const expected = count * typedArrayCtor(type).BYTES_PER_ELEMENT;
    if (raw[index].length !== expected) throw new InputError(`${label}: ${field}[${index}] has ${raw[index].length} bytes, but ${t.datatype} shape [${dims.join(', ')}] needs ${expected}`);
    return { name: t.name, type, dims, data: fromBytes(type, raw[index], count) };
  });
}

/** The bearer token as gRPC metadata (the `authorization` header REST sends). */
export function bearerMetadata(token: string | undefined, headers: Record<string, string> = {}): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(headers)) metadata.set(key.toLowerCase(), value);
  if (token) metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

/** A GRPCInferenceService client on one channel: plaintext, or TLS trusting `ca` (system CAs without it). */
export function createInferenceClient(target: string, tls: boolean, ca: Buffer | undefined, maxReceiveBytes: number): grpc.Client {
  const Service = inferenceService();
  return new Service(target, tls ? grpc.credentials.createSsl(ca ?? null) : grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': maxReceiveBytes });
}

/** One unary call with a deadline: the answer and the server's initial metadata, or the grpc.ServiceError. */
export function callUnary<Res>(client: grpc.Client, method: string, request: object, metadata: grpc.Metadata, timeoutMs: number): Promise<{ response: Res; metadata: grpc.Metadata }> {
  return new Promise((resolve, reject) => {
    let received = new grpc.Metadata();
    const fn = (client as unknown as Record<string, (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Res) => void) => grpc.ClientUnaryCall>)[method];
    const call = fn.call(client, request, metadata, { deadline: Date.now() + timeoutMs }, (err, response) => (err ? reject(err) : resolve({ response, metadata: received })));
    call.on('metadata', (md: grpc.Metadata) => (received = md));
  });
}
