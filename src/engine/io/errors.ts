// ConfigError lives with the engine's other errors (device limits raise it too); io modules import it from here.
export { ConfigError } from '../errors';
