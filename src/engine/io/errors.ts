import { EngineError } from '../errors';

/**
 * A preprocessing or postprocessing setting cannot work with this model (for example a width that
 * contradicts the model's fixed input size). Raised when a graph loads, so it shows on the config
 * node before any message arrives.
 */
export class ConfigError extends EngineError {
  constructor(message: string) {
    super(message, 'CONFIG_INVALID');
  }
}
