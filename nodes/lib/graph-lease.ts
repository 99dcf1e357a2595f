import { ConfigError, resolveImageSpec, checkClassificationOutput, loadLabels, checkDetectionOutputs, checkCharset, loadCharset, resolveDbOptions, optimizeCached } from '../../src/engine';
import type { GraphHandle, InferenceEngine, QueuePolicy, ImageSpec, InferenceSetup, OutputPreset, ImageCalibrationOptions } from '../../src/engine';
import type { DeviceLease } from './device-lease';
import { SharedLease } from './shared-lease';
import { forwardWarnings } from './engine-warnings';
import type { GraphSettings, OptimizeOnLoad } from './settings';
import { MEMBER_KINDS } from './pool';

export interface LoadedGraph {
  /** The engine that holds the graph (the one messages must go to). */
  engine: InferenceEngine;
  /** The engine's id of the graph (shared by every config node that loads the same model). */
  graphId: string;
  setup: InferenceSetup;
  /** The pool's devices the graph was placed on. */
  deviceIds: string[];
  /** What the status shows: the pool's label, with how many members serve when not all do. */
  deviceLabel: string;
  /** Pool devices that do not run this graph, with why (an INT8 graph on an FP16-only stick, a failed load). */
  notRunning: Record<string, string>;
}

export type GraphState = { state: 'idle' } | { state: 'loading' } | { state: 'ready'; graph: LoadedGraph } | { state: 'failed'; error: Error };

/** A flow node using the graph; told about every state change (the MQTT broker node pushes status the same way). */
export interface GraphUser {
  graphState(state: GraphState): void;
  /** A warning the engine raised about this graph (a device fallback, batching turned off). */
  warn?(message: string): void;
}

export interface GraphLeaseLog {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** One load of the graph and what it took from the engine, so exactly that is given back. */
interface Hold {
  engine?: InferenceEngine;
  handle?: GraphHandle;
  /** The token this load registered with the device lease (a fresh one per load, so an old release cannot drop a new load's device). */
  deviceToken?: object;
  /** Stops passing the engine's warnings about this graph on. */
  stopWarnings?: () => void;
  loading: Promise<LoadedGraph>;
}

/**
 * An ncs2-graph config node's hold on an engine graph. The first user loads it (registering with
 * the device config first); later users share it; the last user to leave releases it: freed now
 * when the node was removed, otherwise left idle in the engine so a redeploy gets a cache hit.
 */
export class GraphLease extends SharedLease<GraphUser> {
  private hold: Hold | undefined;
  private current: GraphState = { state: 'idle' };

  constructor(
    private readonly getEngine: () => InferenceEngine,
    /** The device config's lease, or why there is none (no device selected, invalid device config). */
    private readonly device: DeviceLease | Error,
    readonly settings: GraphSettings,
    private readonly name: string,
    private readonly log: GraphLeaseLog,
  ) {
    super();
  }

  get state(): GraphState {
    return this.current;
  }

  /** The device pool the graph runs on (undefined when the device config is missing or invalid). */
  get pool(): DeviceLease | undefined {
    return this.device instanceof Error ? undefined : this.device;
  }

  /** The engine graph id while the model is loaded. */
  get graphId(): string | undefined {
    return this.current.state === 'ready' ? this.current.graph.graphId : undefined;
  }

  /**
   * The batch cap the engine's dynamic batching uses for the graph now; undefined while the graph
   * is not loaded or does not batch. Cheap enough per message (no statistics snapshot).
   */
  batchCap(): number | undefined {
    const s = this.current;
    return s.state === 'ready' ? s.graph.engine.batchCap(s.graph.setup.handle) : undefined;
  }

  /** Where messages wait while the model loads: the device config's queue bound and policy. */
  get waitingBound(): { capacity: number; policy: QueuePolicy } {
    if (this.device instanceof Error) return { capacity: 1, policy: 'reject' };
    return { capacity: this.device.settings.queueCapacity, policy: this.device.settings.queuePolicy };
  }

  register(user: GraphUser): void {
    if (this.closed) {
      user.graphState({ state: 'failed', error: new Error(`graph config ${this.name} is closed (being redeployed or deleted)`) });
      return;
    }
    this.users.add(user);
    if (!this.hold) this.startLoad();
    user.graphState(this.current);
  }

  /** Resolves when the graph is loaded (rejects with the load error); for admin endpoints and tests. */
  whenLoaded(): Promise<LoadedGraph> {
    if (!this.hold) return Promise.reject(new Error(`graph config ${this.name} has no users, so nothing is loaded`));
    return this.hold.loading;
  }


  /** The config node and every flow node using the graph hear the warning (the graph node's help promises it). */
  private warnAll(message: string): void {
    this.log.warn(message);
    for (const user of this.users) user.warn?.(message);
  }

  private setState(state: GraphState): void {
    this.current = state;
    for (const user of this.users) user.graphState(state);
  }

  private startLoad(): void {
    // load() fills in the hold as it takes things from the engine; it reads no field before that.
    const hold = {} as Hold;
    hold.loading = this.load(hold);
    this.hold = hold;
    this.setState({ state: 'loading' });
    hold.loading.then(
      (graph) => {
        if (this.hold === hold) this.setState({ state: 'ready', graph });
      },
      (error: Error) => {
        if (this.hold !== hold) return;
        this.log.error(`cannot load ${this.settings.modelPath}: ${error.message}`);
        this.setState({ state: 'failed', error });
      },
    );
  }

  private async load(hold: Hold): Promise<LoadedGraph> {
    const s = this.settings;
    if (this.device instanceof Error) throw this.device;
    const device = this.device;
    // Labels first: a missing file should fail before anything is taken from the engine.
    const labels = (s.preset === 'classification' || s.preset === 'detection') && s.labelsPath ? await loadLabels(s.labelsPath) : undefined;
    const charset = s.preset === 'text-recognition' && s.charsetPath ? await loadCharset(s.charsetPath, { spaceChar: s.spaceChar }) : undefined;
    const engine = this.getEngine();
    hold.engine = engine;
    // Before the handle exists (a warning while loading), the graph is known by name only: the engine names a graph by the name its first loader gave.
    hold.stopWarnings = forwardWarnings(engine, (about) => (hold.handle ? about.graph === hold.handle.id : about.graphName === this.name), (m) => this.warnAll(m));
    hold.deviceToken = {};
    device.register(hold.deviceToken);
    const { capacity, policy } = this.waitingBound;
    // batching is always passed (false too): the engine keeps a graph's last setting, and a redeploy that turns it off must reach a cached graph.
    // The pool's throughput hint turns on the engine's adaptive batching (sized from measured run times) for a graph that does not batch.
    const batching = s.batching ? { ...s.batching, adaptive: true } : device.settings.hint === 'throughput';
    // FP16-only members (sticks) cannot run an INT8 graph: they are skipped with the reason, not an error while another member can run it.
    const notRunning: Record<string, string> = {};
    const fp16Only = (id: string) => MEMBER_KINDS[device.memberOf(id)!.member.kind].fp16Only;
    let placement = device.deviceIds;
    if (placement.length === 0) {
      const why = device.members().map((m) => `member ${m.position} (${m.kind}): ${m.reason ?? m.state}`);
      throw new ConfigError(`device config ${device.label} has no member that can run a graph now (${why.join('; ')}); add a cpu or sim-ncs2 member`);
    }
    if (s.optimize && s.optimize.precision === 'int8') {
      for (const id of placement.filter(fp16Only)) notRunning[id] = 'skipped: an INT8 graph cannot run on an NCS2 (the Myriad X computes in FP16 only)';
      placement = placement.filter((id) => !fp16Only(id));
      if (placement.length === 0) throw new ConfigError(`an INT8 graph needs a CPU member, but device config ${device.label} has only NCS2 members (FP16 only); choose precision fp16 or add a cpu member`);
      for (const [id, why] of Object.entries(notRunning)) this.log.warn(`${id} ${why}; the pool's other members run it`);
    }
    // A pool with sticks gets the FP16 model (what they run; the CPU runs it too), a CPU-only pool the CPU's.
    const target = s.optimize && s.optimize.precision === 'fp16' && placement.some(fp16Only) ? 'ncs2' : 'cpu';
    const modelPath = s.optimize ? await this.optimized(s.optimize, target) : s.modelPath;
    hold.handle = await engine.loadGraph(modelPath, { name: this.name, devices: placement, queueCapacity: capacity, queuePolicy: policy, batching });
    // The engine records where loading failed; those members are shown and the others serve.
    const loadedOn = new Set(hold.handle.loadedOn);
    for (const id of placement) if (!loadedOn.has(id)) notRunning[id] = `not loaded: ${hold.handle.stateReason ?? 'the load did not finish'}`;
    const running = device.deviceIds.length - Object.keys(notRunning).length;
    const deviceLabel = Object.keys(notRunning).length ? `${device.label} (${running} of ${device.deviceIds.length} serve)` : device.label;
    const info = hold.handle.info;

    let output: OutputPreset;
    if (s.preset === 'detection' || s.preset === 'text-detection' || s.preset === 'text-recognition') {
      output = presetOutput(s, info.outputs, labels, charset, (m) => this.log.warn(m));
    } else if (s.preset === 'classification') {
      const outputName = checkClassificationOutput(info.outputs, s.outputName);
      const classes = classCount(info.outputs.find((o) => o.name === outputName)!.dims);
      if (labels && classes !== undefined && labels.length !== classes) {
        this.log.warn(`labels file ${s.labelsPath} has ${labels.length} labels but output '${outputName}' has ${classes} classes; classes without a label are named by their index`);
      }
      output = { kind: 'classification', topK: s.topK, labels, softmax: s.softmax, outputName };
    } else {
      output = { kind: 'raw', format: s.rawFormat };
    }

    // A model that cannot take images still takes tensors: keep the reason for when an image arrives.
    let image: ImageSpec | Error;
    try {
      image = info.inputs[0] ? resolveImageSpec(info.inputs[0], s.preprocess) : new ConfigError('the model declares no inputs');
    } catch (err) {
      image = err as Error;
    }
    return { engine, graphId: hold.handle.id, setup: { handle: hold.handle, image, maxBatch: s.maxBatch, output, devices: placement }, deviceIds: placement, deviceLabel, notRunning };
  }

  /** The optimized model file: from the disk cache, or made now (off the main thread) and cached. */
  private async optimized(o: OptimizeOnLoad, target: 'cpu' | 'ncs2'): Promise<string> {
    const p = this.settings.preprocess;
    const calibrationImage = JSON.parse(JSON.stringify({ width: p.width, height: p.height, scale: p.scale, mean: p.mean, std: p.std, channelOrder: p.channelOrder, resize: p.resize, layout: p.layout })) as ImageCalibrationOptions;
    const result = await optimizeCached(
      this.settings.modelPath,
      { precision: o.precision, target, calibration: o.calibrationPath, method: o.precision === 'int8' ? o.method : undefined, calibrationImage: o.precision === 'int8' ? calibrationImage : undefined },
      o.cacheDir,
    );
    const r = result.report;
    this.log.info(`${o.precision} model ${result.cached ? 'from the cache' : 'made'}: ${result.modelPath} (${r.quantized.length} nodes converted, ${r.keptFloat.length} kept float; ${r.sizeBytes.before} -> ${r.sizeBytes.after} bytes)`);
    for (const w of r.warnings) this.log.warn(`optimizer: ${w}`);
    return result.modelPath;
  }

  protected override async release(removed: boolean): Promise<void> {
    const hold = this.hold;
    this.hold = undefined;
    if (!hold) return;
    this.current = { state: 'idle' };
    await hold.loading.catch(() => undefined);
    hold.stopWarnings?.();
    if (hold.handle && hold.engine) await hold.engine.releaseGraph(hold.handle, { free: removed });
    if (hold.deviceToken && !(this.device instanceof Error)) await this.device.deregister(hold.deviceToken, removed);
  }
}

type OutputInfo = LoadedGraph['setup']['handle']['info']['outputs'];

/**
 * The detection and OCR presets, checked against the model's outputs now so that a wrong preset
 * shows on the config node when the graph loads instead of failing every message.
 */
function presetOutput(s: GraphSettings, outputs: OutputInfo, labels: string[] | undefined, charset: string[] | undefined, warn: (m: string) => void): OutputPreset {
  if (s.preset === 'detection') {
    const d = s.detection!;
    const options = { layout: d.layout, scoreThreshold: d.scoreThreshold, iouThreshold: d.iouThreshold, maxDetections: d.maxDetections, labels, classFilter: d.classFilter, yoloVariant: d.yoloVariant, boxOrder: d.boxOrder, coordinates: d.coordinates, outputs: s.outputName ? { boxes: s.outputName } : undefined };
    const check = checkDetectionOutputs(outputs, options);
    if (check.warning) warn(check.warning);
    return { kind: 'detection', ...options };
  }
  if (s.preset === 'text-detection') {
    const db = { ...resolveDbOptions(s.textDetection), outputName: s.outputName };
    const out = s.outputName ? outputs.find((o) => o.name === s.outputName) : outputs[0];
    if (!out || !(out.dims.length === 3 || (out.dims.length === 4 && out.dims[1] === 1))) {
      throw new ConfigError(`text detection expects a probability map [N, 1, H, W]; the model's outputs are ${outputs.map((o) => `'${o.name}' [${o.dims.join(', ')}]`).join(', ')}`);
    }
    return { kind: 'text-detection', ...db };
  }
  const out = s.outputName ? outputs.find((o) => o.name === s.outputName) : outputs[0];
  if (!out || out.dims.length !== 3) {
    throw new ConfigError(`text recognition expects scores [N, T, classes]; the model's outputs are ${outputs.map((o) => `'${o.name}' [${o.dims.join(', ')}]`).join(', ')}`);
  }
  checkCharset(charset!, out.dims[2], out.name);
  return { kind: 'text-recognition', charset: charset!, outputName: out.name };
}

/** Classes per row of a [N, classes, ...] output, when fixed. */
function classCount(dims: ReadonlyArray<number | string>): number | undefined {
  let n = 1;
  for (const d of dims.slice(1)) {
    if (typeof d !== 'number' || d <= 0) return undefined;
    n *= d;
  }
  return n;
}
