export { RemoteDevice, type RemoteDeviceSpec, type RemoteDeviceStats } from './remote-device';
export * from './protocol';
export * from './grpc';
