/**
 * Errors of the model optimizer. Each names what was expected, what arrived and what to do,
 * so the CLI and the Node-RED config node can show it as is.
 */
import { EngineError } from '../../errors';

/** The model uses operators, opsets or features the optimizer cannot convert; `items` lists them. */
export class UnsupportedModelError extends EngineError {
  constructor(
    message: string,
    readonly items: string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, 'MODEL_UNSUPPORTED');
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

/** Calibration data does not fit the model input (wrong shape, type, count or unreadable source). */
export class CalibrationError extends EngineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'CALIBRATION_INVALID');
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

/** The options contradict each other or the target (e.g. INT8 for an NCS2). */
export class OptimizeOptionsError extends EngineError {
  constructor(message: string) {
    super(message, 'OPTIMIZE_OPTIONS_INVALID');
  }
}
