/**
 * Typed errors. Each says what was expected, what arrived and, where possible, what to do, so a
 * Node-RED Catch node (or a script) can show a person something actionable.
 */
export class EngineError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The caller's data does not match the model's inputs. Raised before the runtime sees it. */
export class InputError extends EngineError {
  constructor(message: string) {
    super(message, 'INPUT_INVALID');
  }
}

/** The bounded queue refused or dropped this task (policy reject, drop-newest or drop-oldest). */
export class QueueFullError extends EngineError {
  /** 'dropped' when the policy shed the task (drop-oldest, drop-newest), 'rejected' under policy reject or wait. */
  readonly reason: 'dropped' | 'rejected';
  constructor(message: string, readonly policy: string) {
    super(message, 'QUEUE_FULL');
    this.reason = policy === 'drop-oldest' || policy === 'drop-newest' ? 'dropped' : 'rejected';
  }
}

/** A device failed while running the task (worker crashed, device removed, runtime error). */
export class DeviceError extends EngineError {
  constructor(message: string, readonly deviceId: string) {
    super(message, 'DEVICE_FAILED');
  }
}

export class DeadlineExceededError extends EngineError {
  constructor(message: string) {
    super(message, 'DEADLINE_EXCEEDED');
  }
}

export class EngineClosedError extends EngineError {
  constructor(message = 'the inference engine is closed; no new tasks are accepted') {
    super(message, 'ENGINE_CLOSED');
  }
}

export class ModelLoadError extends EngineError {
  constructor(message: string) {
    super(message, 'MODEL_LOAD_FAILED');
  }
}

/**
 * A setting cannot work: out of its range, or contradicting the model (for example a width that
 * differs from the model's fixed input size). Raised when a device or graph is set up, so it shows
 * on the config node before any message arrives, and never reaches the runtime.
 */
export class ConfigError extends EngineError {
  constructor(message: string) {
    super(message, 'CONFIG_INVALID');
  }
}
